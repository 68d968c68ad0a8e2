"""Findings for a live instance (PENDING, RUNNING, SUSPENDED): what it waits on, and why
that is not arriving.

Each awaited thing (recorded after the last turn as ``waiting_on``) and each queued
message is examined once: due work nobody can run (``no_worker``) or nobody gets to in
time (``backlog``), an event never sent or sent under a near-miss name, a retry, a slow
activity, a far timer, a stuck child. What is healthy becomes one ``progressing`` finding
listing it, ranked last.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perdure.core.history import (
    ActivityScheduled,
    EventRaised,
    ExecutionStarted,
)
from perdure.core.registry import versions_in
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import AwaitedActivity, AwaitedTimer
from perdure.diagnosis.children import examine_child
from perdure.diagnosis.evidence import Environment, HistoryIndex, InstanceEvidence
from perdure.diagnosis.letters import dead_letter_findings
from perdure.diagnosis.model import Code, Diagnosis, Finding, Thresholds
from perdure.diagnosis.terminal import no_retry_findings
from perdure.diagnosis.text import clock_time, duration, iso, plural, seconds
from perdure.store.base import ActivityWorkItem, WorkerRecord

#: Diagnoses a child instance; None when it is not examined (depth limit, or a cycle).
ChildDiagnoser = Callable[[str], "Diagnosis | None"]

_NAME_NOISE = re.compile(r"[\W_]+")


def normalized_event_name(name: str) -> str:
    """``name`` without case, whitespace or punctuation: names equal under this but not
    as written are a near miss (``paymentConfirmed`` vs ``Payment Confirmed``)."""
    return _NAME_NOISE.sub("", name).casefold()


def _difference(awaited: str, received: str) -> str:
    if awaited.casefold() == received.casefold():
        return "case"
    if re.sub(r"\s+", "", awaited) == re.sub(r"\s+", "", received):
        return "whitespace"
    return "case, whitespace or punctuation"


def worker_brief(worker: WorkerRecord, now: float) -> dict[str, Any]:
    """A worker row as evidence: identity, heartbeat age, registered names, concurrency."""
    conc = dict(worker.concurrency)
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "heartbeat_age_s": seconds(now - worker.heartbeat_at),
        "activities_running": conc.get("activities_running"),
        "activity_concurrency": conc.get("activity_concurrency"),
        "orchestrations": list(worker.orchestrations)[:20],
        "activities": list(worker.activities)[:20],
    }


@dataclass(slots=True)
class _Received:
    name: str
    at: float
    where: str  # "history", "queue", "dead_letter", "discarded"


@dataclass(slots=True)
class LiveRules:
    """Runs every live-instance rule over one instance's evidence."""

    ev: InstanceEvidence
    index: HistoryIndex
    env: Environment
    limits: Thresholds
    diagnose_child: ChildDiagnoser
    findings: list[Finding] = field(default_factory=list)
    healthy: list[dict[str, Any]] = field(default_factory=list)

    @property
    def now(self) -> float:
        """The moment of the diagnosis."""
        return self.env.now

    def run(self) -> list[Finding]:
        """Every finding of the instance (unranked)."""
        self._suspended()
        self._due_messages()
        self._scheduled_start()
        self._events()
        for timer in self.ev.record.waiting_on.timers:
            self._timer(timer)
        for activity in self.ev.record.waiting_on.activities:
            self._activity(activity)
        for child in self.ev.record.waiting_on.children:
            examine_child(self, child)
        self._bloat()
        self.findings.extend(no_retry_findings(self.index))
        self.findings.extend(dead_letter_findings(self.ev))
        self._progressing()
        return self.findings

    # -- status ---------------------------------------------------------------------------

    def _suspended(self) -> None:
        record = self.ev.record
        if record.status is not OrchestrationStatus.SUSPENDED:
            return
        event = self.index.suspended
        since = event.timestamp if event else record.last_updated_at
        reason = event.reason if event else None
        self.findings.append(
            Finding(
                Code.SUSPENDED,
                f"suspended since {clock_time(since)} ({duration(self.now - since)})"
                + (f": {reason}" if reason else ""),
                {
                    "suspended_at": iso(since),
                    "suspended_s": seconds(self.now - since),
                    "reason": reason,
                    "queued_messages": len(self.ev.messages),
                },
                f"Nothing runs until it is resumed: `perdure resume {record.instance_id}` (or "
                f"client.resume). Messages that arrived meanwhile are kept and then applied in "
                f"order.",
            )
        )

    # -- due work: no_worker / backlog ----------------------------------------------------

    def _due_messages(self) -> None:
        due = [m for m in self.ev.messages if m.visible_at <= self.now]
        if not due:
            return
        oldest = min(m.visible_at for m in due)
        kinds = Counter(type(m.event).__name__ for m in due)
        what = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        record = self.ev.record
        self._due_work("orchestration", record.name, self.now - oldest, len(due), what, record.version)

    def _due_work(self, kind: str, name: str, age: float, count: int, what: str, version: int | None = None) -> None:
        """Due work of ``kind`` for ``name`` (an orchestration's ``version``): a
        ``no_worker`` or ``backlog`` finding, or a healthy item."""
        serving = self.env.serving(kind, name, version)
        iid = self.ev.record.instance_id
        if not serving:
            alive = self.env.alive
            others = sorted({v for w in self.env.serving(kind, name) for v in versions_in(w.orchestrations, name)})
            remedy = (
                f"Start a worker whose App registers {kind} {name!r} (`perdure worker --app "
                f"module:app --store {getattr(self.env.store, 'url', 'URL')}`, or perdure.Worker(app, "
                f"store)); if a deploy renamed "
                f"it, register the old name too until instance {iid!r} and its peers finish."
            )
            if others:
                summary = (
                    f"no live worker runs version {version} of {kind} {name!r} (live workers run "
                    f"{'version' if len(others) == 1 else 'versions'} {', '.join(map(str, others))}); "
                    f"{what} waiting {duration(age)}"
                )
                remedy = (
                    f"A running instance stays on the version it started with: keep version {version} "
                    f"of {name!r} registered (next to the new one, @app.orchestration(name={name!r}, "
                    f"version={version})) on a live worker until instance {iid!r} and its peers "
                    f"finish (docs/upgrading.md)."
                )
            elif alive:
                summary = (
                    f"no live worker has {kind} {name!r} registered ({len(alive)} live, none with "
                    f"it); {what} waiting {duration(age)}"
                )
            else:
                summary = f"no live worker at all; {what} for {kind} {name!r} waiting {duration(age)}"
            self.findings.append(
                Finding(
                    Code.NO_WORKER,
                    summary,
                    {
                        "kind": kind,
                        "name": name,
                        "version": version,
                        "versions_served": others,
                        "due": count,
                        "waiting_s": seconds(age),
                        "live_workers": [worker_brief(w, self.now) for w in alive],
                        "stale_workers": [
                            {"worker_id": w.worker_id, "last_heartbeat_at": iso(w.heartbeat_at)} for w in self.env.stale
                        ],
                    },
                    remedy,
                )
            )
            return
        if age > self.limits.backlog_after:
            running = sum(int(w.concurrency.get("activities_running", 0)) for w in serving)
            slots = sum(int(w.concurrency.get("activity_concurrency", 0)) for w in serving)
            threads = sum(int(w.concurrency.get("orchestration_concurrency", 0)) for w in serving)
            q = self.env.queues
            if kind == "activity":
                busy = f"{running}/{slots} activity slots in use"
                saturated = slots > 0 and running >= slots
            else:
                busy = f"{threads} orchestration threads, {q.orchestration_visible} messages due in all"
                saturated = True
            mitigation = (
                "Compatible workers are alive but not keeping up: add workers or raise "
                "activity_concurrency / orchestration_concurrency; look for long-running "
                "activities holding the slots (slow_activity on other instances) before scaling out."
                if saturated
                else "Compatible workers are alive with free slots yet do not take the work: check "
                "their logs for dispatcher or store errors and the store's latency; restart them."
            )
            self.findings.append(
                Finding(
                    Code.BACKLOG,
                    f"{what} for {kind} {name!r} due {duration(age)} ago, not yet taken: "
                    f"{plural(len(serving), 'live worker')} can run it ({busy})",
                    {
                        "kind": kind,
                        "name": name,
                        "due": count,
                        "oldest_due_s": seconds(age),
                        "threshold_s": self.limits.backlog_after,
                        "workers": [worker_brief(w, self.now) for w in serving],
                        "activities_running": running,
                        "activity_slots": slots,
                        "orchestration_threads": threads,
                        "queue": {
                            "orchestration_visible": q.orchestration_visible,
                            "oldest_orchestration_s": _opt_seconds(q.oldest_orchestration_age),
                            "activity_visible": q.activity_visible,
                            "activity_locked": q.activity_locked,
                            "oldest_activity_s": _opt_seconds(q.oldest_activity_age),
                        },
                    },
                    mitigation,
                )
            )
            return
        self.healthy.append({"kind": kind, "name": name, "state": "due", "due": count, "waiting_s": seconds(age)})

    def _scheduled_start(self) -> None:
        for m in self.ev.messages:
            if not isinstance(m.event, ExecutionStarted) or m.visible_at <= self.now:
                continue
            due_in = m.visible_at - self.now
            if due_in > self.limits.timer_far:
                self.findings.append(
                    Finding(
                        Code.TIMER_PENDING,
                        f"execution {m.execution_id} starts at {clock_time(m.visible_at)} (in {duration(due_in)})",
                        {"kind": "start", "fire_at": iso(m.visible_at), "due_in_s": seconds(due_in)},
                        "It was started with start_at in the future and runs then; terminate it "
                        "and start it again if it must run sooner.",
                    )
                )
            else:
                self.healthy.append({"kind": "start", "fire_at": iso(m.visible_at), "due_in_s": seconds(due_in)})

    # -- external events ------------------------------------------------------------------

    def _received(self) -> list[_Received]:
        out = [_Received(e.name, e.timestamp, "history") for _, e in self.index.events]
        out += [
            _Received(m.event.name, m.enqueued_at, "queue")
            for m in self.ev.messages
            if isinstance(m.event, EventRaised)
        ]
        out += [
            _Received(d.event.name, d.enqueued_at, "dead_letter")
            for d in self.ev.dead_letters
            if isinstance(d.event, EventRaised)
        ]
        out += [
            _Received(d.event.name, d.discarded_at, "discarded")
            for d in self.ev.discards
            if isinstance(d.event, EventRaised)
        ]
        return out

    def _events(self) -> None:
        awaited = self.ev.record.waiting_on.events
        if not awaited:
            return
        iid = self.ev.record.instance_id
        received = self._received()
        for name in sorted({e.name for e in awaited}):
            misses = [
                r for r in received if r.name != name and normalized_event_name(r.name) == normalized_event_name(name)
            ]
            for got in sorted({r.name for r in misses}):
                hits = [r for r in misses if r.name == got]
                self.findings.append(
                    Finding(
                        Code.EVENT_NAME_MISMATCH,
                        f"waiting for event {name!r} but received {got!r}, which differs only in "
                        f"{_difference(name, got)}",
                        {
                            "awaited": name,
                            "received": got,
                            "received_count": len(hits),
                            "first_received_at": iso(min(r.at for r in hits)),
                            "received_where": sorted({r.where for r in hits}),
                        },
                        f"Event names are matched exactly: fix the sender to raise {name!r}. To "
                        f"unblock this instance now: `perdure raise {iid} {name} '<json payload>'`.",
                    )
                )
        events = []
        for e in awaited:
            item: dict[str, Any] = {
                "name": e.name,
                "since_at": iso(e.since),
                "waiting_s": seconds(self.now - e.since),
                "timeout_at": iso(e.timeout_at),
            }
            if e.timeout_at is not None:
                item["times_out_in_s"] = seconds(e.timeout_at - self.now)
            events.append(item)
        names = ", ".join(repr(e.name) for e in awaited)
        since = min(e.since for e in awaited)
        timeouts = [e.timeout_at for e in awaited if e.timeout_at is not None]
        tail = f"times out at {clock_time(min(timeouts))}" if timeouts else "no timeout"
        mitigation = (
            f"Check that the sender raises exactly {names} to instance {iid!r} (`perdure raise "
            f"{iid} NAME '<json>'` delivers one by hand)"
        )
        mitigation += (
            "; when the timeout passes the wait raises TaskTimeoutError in the orchestration."
            if timeouts
            else "; give the wait a timeout=timedelta(...) so it cannot wait forever."
        )
        self.findings.append(
            Finding(
                Code.WAITING_FOR_EVENT,
                f"waiting for event {names} since {clock_time(since)} ({duration(self.now - since)}, {tail})",
                {
                    "events": events,
                    "received_names": sorted({r.name for r in received}),
                },
                mitigation,
            )
        )

    # -- timers and retries ---------------------------------------------------------------

    def _timer(self, timer: AwaitedTimer) -> None:
        if timer.purpose == "retry":
            self._retry_timer(timer)
            return
        if timer.purpose != "timer":
            return  # a timeout timer belongs to the event wait it bounds
        due_in = timer.fire_at - self.now
        if due_in > self.limits.timer_far:
            self.findings.append(
                Finding(
                    Code.TIMER_PENDING,
                    f"waiting on a timer due at {clock_time(timer.fire_at)} (in {duration(due_in)})",
                    {
                        "task_id": timer.task_id,
                        "fire_at": iso(timer.fire_at),
                        "due_in_s": seconds(due_in),
                        "threshold_s": self.limits.timer_far,
                    },
                    "The orchestration sleeps by design and resumes when the timer fires; if the "
                    "delay is wrong, fix the ctx.create_timer duration in code (running instances "
                    "keep their recorded timer) or terminate and restart the instance.",
                )
            )
        else:
            self.healthy.append(
                {"kind": "timer", "task_id": timer.task_id, "fire_at": iso(timer.fire_at), "due_in_s": seconds(due_in)}
            )

    def _retry_timer(self, timer: AwaitedTimer) -> None:
        origin = self.index.retry_origin(self.ev.history, timer.task_id)
        due_in = timer.fire_at - self.now
        if origin is None:
            self.healthy.append(
                {
                    "kind": "retry_timer",
                    "task_id": timer.task_id,
                    "fire_at": iso(timer.fire_at),
                    "due_in_s": seconds(due_in),
                }
            )
            return
        scheduled, failure = origin
        if isinstance(scheduled, ActivityScheduled):
            kind, name = "activity", scheduled.name
            attempt, max_attempts = scheduled.attempt, scheduled.max_attempts
        else:
            kind, name = "sub-orchestration", scheduled.name
            attempt = sum(1 for _, c in self.index.children.values() if c.name == name)
            max_attempts = None
        of = f" of {max_attempts}" if max_attempts else ""
        self.findings.append(
            Finding(
                Code.ACTIVITY_RETRYING,
                f"{kind} {name!r} is retrying: attempt {attempt}{of} failed ({failure}); attempt "
                f"{attempt + 1} at {clock_time(timer.fire_at)} (in {duration(due_in)})",
                {
                    "kind": kind,
                    "name": name,
                    "attempt": attempt,
                    "max_attempts": max_attempts,
                    "next_attempt": attempt + 1,
                    "next_attempt_at": iso(timer.fire_at),
                    "next_attempt_in_s": seconds(due_in),
                    "last_error_type": failure.type,
                    "last_error_message": failure.message,
                    "failures": self._failures_of(name),
                },
                _retry_mitigation(name, max_attempts),
            )
        )

    def _failures_of(self, name: str) -> int:
        return sum(1 for s, _ in self.index.activity_failures() if s.name == name)

    # -- activities -----------------------------------------------------------------------

    def _activity(self, awaited: AwaitedActivity) -> None:
        row = self.ev.task_row(awaited.task_id)
        entry = self.index.activities.get(awaited.task_id)
        scheduled = entry[1] if entry else None
        if row is None:
            if self.ev.queued_completion(awaited.task_id) is None:
                # Completed and applied between our reads: it moved on.
                self.healthy.append(
                    {"kind": "activity", "name": awaited.name, "task_id": awaited.task_id, "state": "finishing"}
                )
            return
        locked = bool(row.lease_token) and row.lease_expires_at > self.now
        if locked:
            self._running(awaited, row)
        else:
            visible = row.visible_at if row.visible_at is not None else row.enqueued_at
            if visible <= self.now:
                self._due_work(
                    "activity", row.name, self.now - visible, 1, f"activity task {row.task_id} (attempt {row.attempt})"
                )
            else:
                self.healthy.append(
                    {
                        "kind": "activity",
                        "name": row.name,
                        "task_id": row.task_id,
                        "state": "scheduled",
                        "due_at": iso(visible),
                    }
                )
        if awaited.attempt > 1 and scheduled is not None:
            self._attempt_in_progress(scheduled, "running" if locked else "queued", row)

    def _running(self, awaited: AwaitedActivity, row: ActivityWorkItem) -> None:
        started = row.locked_at if row.locked_at is not None else self.now
        running = self.now - started
        median, runs = self.index.median_duration(row.name)
        limits = self.limits
        relative = None if median is None else max(limits.slow_activity_factor * median, limits.slow_activity_floor)
        owner_alive = any(w.worker_id == row.lease_owner for w in self.env.alive)
        slow_absolute = running >= limits.slow_activity_after
        slow_relative = relative is not None and running >= relative
        if not (slow_absolute or slow_relative):
            item = {
                "kind": "activity",
                "name": row.name,
                "task_id": row.task_id,
                "attempt": row.attempt,
                "state": "running",
                "running_s": seconds(running),
                "worker": row.lease_owner,
            }
            if not owner_alive:
                item["state"] = "orphaned"
                item["lease_expires_at"] = iso(row.lease_expires_at)
            self.healthy.append(item)
            return
        if slow_relative and median is not None:
            why = (
                f"{running / median:.0f}x its median of {duration(median)} over {plural(runs, 'earlier run')}"
                if median > 0
                else f"while its {plural(runs, 'earlier run')} took no time"
            )
        else:
            why = f"over the {duration(limits.slow_activity_after)} threshold"
        self.findings.append(
            Finding(
                Code.SLOW_ACTIVITY,
                f"activity {row.name!r} (task {row.task_id}, attempt {row.attempt}) has been "
                f"running for {duration(running)}, {why}",
                {
                    "activity": row.name,
                    "task_id": row.task_id,
                    "attempt": row.attempt,
                    "started_at": iso(started),
                    "running_s": seconds(running),
                    "median_s": None if median is None else seconds(median),
                    "earlier_runs": runs,
                    "threshold_s": seconds(
                        relative if slow_relative and relative is not None else limits.slow_activity_after
                    ),
                    "worker": row.lease_owner,
                    "worker_alive": owner_alive,
                    "lease_expires_at": iso(row.lease_expires_at),
                },
                f"Check the dependency {row.name!r} calls (latency, timeouts, locks) and the worker "
                f"running it ({row.lease_owner}); put a timeout on the call inside the activity. "
                f"If that worker died, the lease expires at {clock_time(row.lease_expires_at)} and "
                f"another worker runs the activity again.",
            )
        )

    def _attempt_in_progress(self, scheduled: ActivityScheduled, state: str, row: ActivityWorkItem) -> None:
        failure = self.index.previous_failure(scheduled)
        of = f" of {scheduled.max_attempts}" if scheduled.max_attempts else ""
        last = f"; attempt {scheduled.attempt - 1} failed ({failure})" if failure else ""
        self.findings.append(
            Finding(
                Code.ACTIVITY_RETRYING,
                f"activity {scheduled.name!r} is on attempt {scheduled.attempt}{of} ({state}){last}",
                {
                    "kind": "activity",
                    "name": scheduled.name,
                    "attempt": scheduled.attempt,
                    "max_attempts": scheduled.max_attempts,
                    "state": state,
                    "next_attempt_at": None,
                    "last_error_type": failure.type if failure else None,
                    "last_error_message": failure.message if failure else None,
                    "failures": self._failures_of(scheduled.name),
                    "task_id": row.task_id,
                },
                _retry_mitigation(scheduled.name, scheduled.max_attempts),
            )
        )

    # -- children -------------------------------------------------------------------------

    # -- history size ---------------------------------------------------------------------

    def _bloat(self) -> None:
        record, limits = self.ev.record, self.limits
        if record.history_event_count < limits.history_events and record.history_bytes < limits.history_bytes:
            return
        stats = record.stats
        avg = stats.replayed_events / stats.full_replays if stats.full_replays else 0.0
        self.findings.append(
            Finding(
                Code.HISTORY_BLOAT,
                f"execution {record.execution_id} history holds {record.history_event_count:,} "
                f"events ({record.history_bytes / 1e6:.2f} MB), over the threshold "
                f"({limits.history_events:,} events / {limits.history_bytes / 1e6:.0f} MB); "
                f"{stats.full_replays} full replays re-ran {stats.replayed_events:,} events; last "
                f"turn took {duration(stats.last_turn_duration)}",
                {
                    "history_events": record.history_event_count,
                    "history_bytes": record.history_bytes,
                    "threshold_events": limits.history_events,
                    "threshold_bytes": limits.history_bytes,
                    "execution_id": record.execution_id,
                    "turns": stats.turns,
                    "full_replays": stats.full_replays,
                    "replayed_events": stats.replayed_events,
                    "avg_events_per_replay": round(avg, 1),
                    "last_turn_duration_s": seconds(stats.last_turn_duration),
                },
                "Call ctx.continue_as_new(state) every N iterations so each execution keeps a short "
                "history (unconsumed events are carried over); keep large payloads out of "
                "activity inputs and results (store them elsewhere, pass references).",
            )
        )

    # -- health ---------------------------------------------------------------------------

    def _progressing(self) -> None:
        if not self.healthy and self.findings:
            return
        record = self.ev.record
        last = record.stats.last_progress_at
        parts = [_describe(item) for item in self.healthy] or ["nothing awaited or queued"]
        self.findings.append(
            Finding(
                Code.PROGRESSING,
                f"{record.status.value.lower()}: " + "; ".join(parts),
                {
                    "waiting_on": self.healthy,
                    "last_progress_at": iso(last),
                    "no_progress_s": None if last is None else seconds(self.now - last),
                    "turns": record.stats.turns,
                    "live_workers": len(self.env.alive),
                },
                "Nothing to do: it is moving. Diagnose again later if it must finish sooner.",
            )
        )


def _retry_mitigation(name: str, max_attempts: int | None) -> str:
    last = f" after attempt {max_attempts}" if max_attempts else ""
    return (
        f"Retries run as designed with durable timers; if every attempt fails the same way, fix "
        f"what {name!r} depends on (the error above) - the orchestration gets ActivityError"
        f"{last}. Raise max_attempts or the backoff if the outage is expected to last."
    )


def _opt_seconds(value: float | None) -> float | None:
    return None if value is None else seconds(value)


def _describe(item: dict[str, Any]) -> str:
    kind = item.get("kind")
    state = item.get("state")
    if kind == "activity":
        if state == "running":
            return f"activity {item['name']!r} running for {duration(item['running_s'])}"
        if state == "orphaned":
            return (
                f"activity {item['name']!r} held by stopped worker {item['worker']}, retried "
                f"after its lease expires at {item['lease_expires_at']}"
            )
        if state == "due":
            return f"activity {item['name']!r} queued for {duration(item['waiting_s'])}"
        if state == "scheduled":
            return f"activity {item['name']!r} due at {item['due_at']}"
        return f"activity {item['name']!r} finishing"
    if kind == "orchestration":
        return f"{plural(item['due'], 'message')} queued for a turn ({duration(item['waiting_s'])})"
    if kind in ("timer", "retry_timer", "start"):
        return f"{kind.replace('_', ' ')} due in {duration(item['due_in_s'])}"
    if kind == "child":
        return f"child {item['instance_id']!r} ({item.get('verdict', state)})"
    return str(item)
