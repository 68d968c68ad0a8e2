"""Plain-text forms of a diagnosis and of a fleet report (the CLI's default output)."""

from __future__ import annotations

import textwrap
from typing import Any

from perdure.diagnosis.model import Diagnosis, FleetReport
from perdure.diagnosis.text import clock_time, duration, short

_WIDTH = 100
# Evidence keys too bulky for text (they stay in --json).
_HIDDEN = frozenset({"child_diagnosis"})


def _wrap(text: str, first: str, rest: str) -> list[str]:
    """``text`` wrapped to the width, the first line after ``first``, the others after
    ``rest``."""
    return textwrap.wrap(
        text,
        _WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [first]


def _evidence(key: str, value: Any) -> list[str]:
    """One evidence entry: ``key: value``, a list of records one per line."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = [
            "       - " + ", ".join(f"{k}={short(v, 60)}" for k, v in item.items() if v not in (None, [], {}))
            for item in value[:10]
        ]
        more = [f"       ... {len(value) - 10} more"] if len(value) > 10 else []
        return [f"     {key}:", *(short(i, 160) for i in items), *more]
    return [f"     {key}: {short(value, 160)}"]


def render_diagnosis(diagnosis: Diagnosis) -> str:
    """``diagnosis`` as text: the verdict, then each finding: summary, evidence, fix."""
    lines = [
        f"instance {diagnosis.instance_id} ({diagnosis.name}) is {diagnosis.status}",
        f"verdict: {diagnosis.verdict}" + ("  (stuck)" if diagnosis.stuck else ""),
    ]
    for n, finding in enumerate(diagnosis.findings, start=1):
        lines += ["", f"{n}. {finding.code}"]
        lines += _wrap(finding.summary, "   ", "   ")
        evidence = [
            line
            for key, value in finding.evidence.items()
            if key not in _HIDDEN and value not in (None, [], {})
            for line in _evidence(key, value)
        ]
        if evidence:
            lines += ["   evidence:", *evidence]
        lines += _wrap(finding.mitigation, "   fix: ", "        ")
    return "\n".join(lines)


def _counts(by_status: dict[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in by_status.items() if n) or "none"


def _d(value: Any) -> str:
    return "-" if value is None else duration(float(value))


def render_fleet(report: FleetReport) -> str:
    """``report`` as text: counts, running ages, workers, queues, stalled instances by
    verdict and the signal table."""
    lines = [
        f"fleet report at {clock_time(report.generated_at)}: {report.state}",
        f"instances: {_counts(dict(report.totals))}",
    ]
    for name, by_status in sorted(report.counts.items()):
        lines.append(f"  {name}: {_counts(dict(by_status))}")
    age = report.running_age
    if age["count"]:
        lines.append(f"running age: p50 {_d(age['p50_s'])}, p95 {_d(age['p95_s'])}, max {_d(age['max_s'])}")
        oldest = ", ".join(f"{o['instance_id']} ({_d(o['age_s'])})" for o in age["oldest"])
        lines += _wrap(oldest, "  oldest: ", "    ")
    workers = [
        f"{w['worker_id']} ({w['activities_running']}/{w['activity_concurrency']} activity "
        f"slots, heartbeat {_d(w['heartbeat_age_s'])} ago)"
        for w in report.workers
    ]
    lines += _wrap("; ".join(workers) or "none", f"workers: {len(workers)} live: ", "    ")
    if report.stale_workers:
        stale = ", ".join(w["worker_id"] for w in report.stale_workers)
        lines += _wrap(stale, "  stopped heartbeating: ", "    ")
    q = report.queues
    lines.append(
        f"queues: {q['orchestration_visible']} messages due (oldest {_d(q['oldest_orchestration_s'])}), "
        f"{q['activity_visible']} activity tasks due (oldest {_d(q['oldest_activity_s'])}), "
        f"{q['activity_locked']} running, {q['dead_letters']} dead letters"
    )
    lines.append("")
    lines.append(
        f"no progress for over {duration(report.stalled_after_s)}: {report.stalled_total} "
        f"live instances"
        + (f" ({sum(len(g) for g in report.stalled.values())} diagnosed)" if report.stalled_total else "")
    )
    for code, group in report.stalled.items():
        lines.append(f"  {code} ({len(group)})")
        for s in group:
            lines += _wrap(
                f"{s.instance_id} ({s.name}, {s.status}, {_d(s.no_progress_s)}): {s.summary}",
                "    ",
                "        ",
            )
    lines.append("")
    lines.append("signals:")
    for signal in report.signals:
        lines += _wrap(f"[{signal.state}] {signal.signal}: {signal.value}", "  ", "      ")
    return "\n".join(lines)
