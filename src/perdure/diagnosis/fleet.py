"""``diagnose_all(store)``: the fleet-wide stuck report, the playbook's signal table
computed from the store.

Store reads are bounded: one aggregate for the counts, a handful of index reads for the
age percentiles (``oldest_instances`` with an offset), one for the stalled instances, and
a full diagnosis of at most ``limit`` of them.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from perdure.core.status import OrchestrationStatus
from perdure.diagnosis.instance import Diagnoser
from perdure.diagnosis.live import worker_brief
from perdure.diagnosis.model import (
    NOT_STUCK,
    RANK,
    Code,
    FleetReport,
    Signal,
    StalledInstance,
    Thresholds,
)
from perdure.diagnosis.text import duration, iso, seconds
from perdure.errors import InstanceNotFoundError
from perdure.store.base import Store

RUNNING = OrchestrationStatus.RUNNING
_SEVERITY = {"normal": 0, "watch": 1, "incident": 2}


def diagnose_all(
    store: Store,
    *,
    thresholds: Thresholds | None = None,
    limit: int = 50,
    oldest: int = 5,
    now: float | None = None,
) -> FleetReport:
    """The fleet report: counts by status and name, the age distribution of RUNNING
    instances (p50, p95, max, the ``oldest`` ids), live and stale workers, the queues, and
    the live instances without progress for longer than ``thresholds.stalled_after``
    (the ``limit`` stalest diagnosed, grouped by verdict), summed up as the playbook's
    signal table. Read-only."""
    diagnoser = Diagnoser(store, thresholds, now=now)
    limits, env, now = diagnoser.thresholds, diagnoser.env, diagnoser.now

    totals = {s.value: 0 for s in OrchestrationStatus}
    counts: dict[str, dict[str, int]] = {}
    for row in store.instance_counts():
        totals[row.status.value] += row.count
        counts.setdefault(row.name, {})[row.status.value] = row.count
    age = _running_age(store, totals[RUNNING.value], now, oldest)

    stalled_total, rows = store.stalled_instances(progress_before=now - limits.stalled_after, limit=max(0, limit))
    groups: dict[Code, list[StalledInstance]] = {}
    seen: Counter[Code] = Counter()  # instances with each code among their findings
    largest = 0
    for row in rows:
        try:
            diagnosis = diagnoser.diagnose(row.instance_id)
        except InstanceNotFoundError:  # purged meanwhile
            continue
        largest = max(largest, row.history_event_count)
        seen.update(set(diagnosis.codes))
        last = row.last_progress_at if row.last_progress_at is not None else row.created_at
        groups.setdefault(diagnosis.verdict, []).append(
            StalledInstance(
                row.instance_id,
                row.name,
                diagnosis.status,
                now - last,
                diagnosis.verdict,
                diagnosis.top.summary,
            )
        )
    stalled = {code: tuple(groups[code]) for code in RANK if code in groups}

    alive = env.alive
    q = env.queues
    queues = {
        "orchestration_depth": q.orchestration_depth,
        "orchestration_visible": q.orchestration_visible,
        "oldest_orchestration_s": None if q.oldest_orchestration_age is None else seconds(q.oldest_orchestration_age),
        "activity_depth": q.activity_depth,
        "activity_visible": q.activity_visible,
        "activity_locked": q.activity_locked,
        "oldest_activity_s": None if q.oldest_activity_age is None else seconds(q.oldest_activity_age),
        "dead_letters": q.dead_letters,
    }
    signals = _signals(
        limits=limits,
        totals=totals,
        age=age,
        groups=groups,
        seen=seen,
        diagnosed=sum(len(g) for g in groups.values()),
        largest=largest,
        workers=[worker_brief(w, now) for w in alive],
        queues=queues,
    )
    state = max((s.state for s in signals), key=_SEVERITY.__getitem__, default="normal")
    return FleetReport(
        generated_at=now,
        state=state,
        totals=totals,
        counts=counts,
        running_age=age,
        workers=tuple(worker_brief(w, now) for w in alive),
        stale_workers=tuple(
            {"worker_id": w.worker_id, "host": w.host, "last_heartbeat_at": iso(w.heartbeat_at)} for w in env.stale
        ),
        queues=queues,
        stalled_after_s=limits.stalled_after,
        stalled_total=stalled_total,
        stalled=stalled,
        signals=tuple(signals),
    )


def _running_age(store: Store, running: int, now: float, oldest: int) -> dict[str, Any]:
    """p50 / p95 / max age of RUNNING instances (nearest rank), read at their ranks."""
    if running == 0:
        return {"count": 0, "p50_s": None, "p95_s": None, "max_s": None, "oldest": []}

    def age_at(q: float) -> float | None:
        rank = max(1, math.ceil(q * running))  # 1-based, youngest first
        rows = store.oldest_instances(statuses=[RUNNING], offset=running - rank, limit=1)
        return seconds(now - rows[0].created_at) if rows else None

    first = store.oldest_instances(statuses=[RUNNING], limit=max(1, oldest))
    return {
        "count": running,
        "p50_s": age_at(0.5),
        "p95_s": age_at(0.95),
        "max_s": seconds(now - first[0].created_at) if first else None,
        "oldest": [
            {
                "instance_id": r.instance_id,
                "name": r.name,
                "age_s": seconds(now - r.created_at),
                "no_progress_s": seconds(
                    now - (r.last_progress_at if r.last_progress_at is not None else r.created_at)
                ),
            }
            for r in first[: max(0, oldest)]
        ],
    }


def _signals(
    *,
    limits: Thresholds,
    totals: dict[str, int],
    age: dict[str, Any],
    groups: dict[Code, list[StalledInstance]],
    seen: Counter[Code],
    diagnosed: int,
    largest: int,
    workers: list[dict[str, Any]],
    queues: dict[str, Any],
) -> list[Signal]:
    stuck = sum(len(g) for code, g in groups.items() if code not in NOT_STUCK)

    def d(value: float | None) -> str:
        return "-" if value is None else duration(value)

    if age["count"]:
        ages = (
            f"running: {age['count']}, p50 {d(age['p50_s'])}, p95 {d(age['p95_s'])}, "
            f"max {d(age['max_s'])}; stuck without progress for over "
            f"{duration(limits.stalled_after)}: {stuck}"
        )
    else:
        ages = "no running instances"
    running = sum(int(w.get("activities_running") or 0) for w in workers)
    slots = sum(int(w.get("activity_concurrency") or 0) for w in workers)
    capacity_issue = seen[Code.NO_WORKER] + seen[Code.BACKLOG] or (
        not workers and queues["orchestration_visible"] + queues["activity_visible"] > 0
    )
    events_issue = seen[Code.EVENT_NAME_MISMATCH] + seen[Code.DEAD_LETTER]
    return [
        Signal(
            "orchestration age distribution",
            ages,
            "incident" if stuck else "normal",
            "normal: most complete near their SLO; incident: a long tail of old Running "
            "instances without progress (listed under stalled)",
        ),
        Signal(
            "replay / history size",
            f"stalled instances over {limits.history_events:,} events or "
            f"{limits.history_bytes / 1e6:.0f} MB: {seen[Code.HISTORY_BLOAT]} of {diagnosed}; "
            f"largest stalled history: {largest:,} events",
            "incident" if seen[Code.HISTORY_BLOAT] else "normal",
            "incident: replay cost grows with history; use continue-as-new",
        ),
        Signal(
            "activity success",
            f"stalled instances retrying: {seen[Code.ACTIVITY_RETRYING]}, with an activity "
            f"failed without retry: {seen[Code.ACTIVITY_FAILED_NO_RETRY]}; FAILED instances: "
            f"{totals['FAILED']}",
            "incident" if seen[Code.ACTIVITY_RETRYING] + seen[Code.ACTIVITY_FAILED_NO_RETRY] else "normal",
            "normal: transient retries that succeed; incident: sustained failure or no retry policy",
        ),
        Signal(
            "external event receipt",
            f"stalled instances waiting for an event: {seen[Code.WAITING_FOR_EVENT]}, with a "
            f"near-miss event name: {seen[Code.EVENT_NAME_MISMATCH]}, with dead-lettered or "
            f"discarded messages: {seen[Code.DEAD_LETTER]}",
            "incident" if events_issue else ("watch" if seen[Code.WAITING_FOR_EVENT] else "normal"),
            "normal: events arrive before their timeout; incident: waits never fulfilled",
        ),
        Signal(
            "activity latency",
            f"stalled instances with a slow activity: {seen[Code.SLOW_ACTIVITY]}",
            "incident" if seen[Code.SLOW_ACTIVITY] else "normal",
            "incident: a dependency is slow or hanging; check the activity's downstream calls",
        ),
        Signal(
            "workers and queues",
            f"live workers: {len(workers)}, activity slots busy: {running}/{slots}; oldest due "
            f"message: {d(queues['oldest_orchestration_s'])}, oldest due task: "
            f"{d(queues['oldest_activity_s'])}; stalled instances with no worker: "
            f"{seen[Code.NO_WORKER]}, in a backlog: {seen[Code.BACKLOG]}",
            "incident" if capacity_issue else "normal",
            "incident: no compatible worker (deploy/registration) or workers too busy (scale)",
        ),
    ]
