"""What diagnosis answers, as frozen data: findings, diagnoses, fleet reports, thresholds.

A :class:`Diagnosis` ranks its :class:`Finding` objects most important first; its
``verdict`` is the code of the first one. Codes are the strings of :class:`Code` (a
``StrEnum``, so ``finding.code == "waiting_for_event"`` holds). Every ``to_dict()`` is
JSON-ready: timestamps inside evidence are ISO-8601 UTC strings (keys ending ``_at``),
durations are seconds (keys ending ``_s``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, fields
from enum import StrEnum
from typing import Any

from perdure.core.records import frozen_record
from perdure.diagnosis.text import iso
from perdure.errors import InvalidInputError


class Code(StrEnum):
    """The finding codes."""

    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"
    PROGRESSING = "progressing"
    HISTORY_BLOAT = "history_bloat"
    WAITING_FOR_EVENT = "waiting_for_event"
    EVENT_NAME_MISMATCH = "event_name_mismatch"
    ACTIVITY_RETRYING = "activity_retrying"
    ACTIVITY_FAILED_NO_RETRY = "activity_failed_no_retry"
    SLOW_ACTIVITY = "slow_activity"
    NONDETERMINISM = "nondeterminism"
    NO_WORKER = "no_worker"
    BACKLOG = "backlog"
    CHILD_STUCK = "child_stuck"
    TIMER_PENDING = "timer_pending"
    SUSPENDED = "suspended"
    DEAD_LETTER = "dead_letter"


# Most important first. For a finished instance, its cause (nondeterminism, an activity that
# failed without retry) outranks the bare terminal status.
TERMINAL_RANK: tuple[Code, ...] = (
    Code.NONDETERMINISM,
    Code.ACTIVITY_FAILED_NO_RETRY,
    Code.FAILED,
    Code.TERMINATED,
    Code.COMPLETED,
    Code.DEAD_LETTER,
)
# For a live instance, what stops all progress comes first (suspended, nobody to run the due
# work, a stuck child), then the playbook's order: history/replay cost, the external event,
# activity failures, then capacity; plain waits and health last.
LIVE_RANK: tuple[Code, ...] = (
    Code.SUSPENDED,
    Code.NO_WORKER,
    Code.CHILD_STUCK,
    Code.HISTORY_BLOAT,
    Code.EVENT_NAME_MISMATCH,
    Code.DEAD_LETTER,
    Code.WAITING_FOR_EVENT,
    Code.ACTIVITY_RETRYING,
    Code.ACTIVITY_FAILED_NO_RETRY,
    Code.SLOW_ACTIVITY,
    Code.BACKLOG,
    Code.TIMER_PENDING,
    Code.PROGRESSING,
)
#: Every code, terminal ones first, then live ones in rank order (the fleet report's order).
RANK: tuple[Code, ...] = tuple(dict.fromkeys(TERMINAL_RANK + LIVE_RANK))
_TERMINAL_RANK = {code: i for i, code in enumerate(TERMINAL_RANK)}
_LIVE_RANK = {code: i for i, code in enumerate(LIVE_RANK)}

#: Verdicts that mean "not stuck": finished, or healthy and moving.
NOT_STUCK: frozenset[Code] = frozenset({Code.COMPLETED, Code.FAILED, Code.TERMINATED, Code.PROGRESSING})


@frozen_record
class Thresholds:
    """When evidence becomes a finding. Durations are seconds.

    - ``history_events`` / ``history_bytes``: a live execution's history at or over either
      is ``history_bloat`` (default 10,000 events or 10 MB).
    - ``backlog_after``: due work (a message or an activity task) waiting longer than this
      while compatible workers are alive is ``backlog`` (30 s).
    - ``slow_activity_factor`` / ``slow_activity_floor``: a running activity is
      ``slow_activity`` once it ran ``factor`` times the median of this instance's earlier
      runs of the same activity (10x), and at least ``floor`` seconds (1 s);
      ``slow_activity_after``: or once it ran this long whatever its history (5 min).
    - ``timer_far``: a timer due further ahead than this is ``timer_pending`` (1 h).
    - ``stalled_after``: the fleet report examines live instances without progress for
      longer than this (5 min).
    - ``worker_timeout``: a worker whose last heartbeat is older is gone (15 s: three
      missed heartbeats at the default interval).
    - ``child_depth``: how deep ``child_stuck`` follows sub-orchestrations (5).
    """

    history_events: int = 10_000
    history_bytes: int = 10_000_000
    backlog_after: float = 30.0
    slow_activity_factor: float = 10.0
    slow_activity_floor: float = 1.0
    slow_activity_after: float = 300.0
    timer_far: float = 3600.0
    stalled_after: float = 300.0
    worker_timeout: float = 15.0
    child_depth: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidInputError(f"threshold {f.name} must be a number >= 0, got {value!r}")

    @classmethod
    def with_overrides(cls, base: Thresholds | None = None, **overrides: Any) -> Thresholds:
        """``base`` (default: the defaults) with some fields replaced; unknown names are an
        :class:`~perdure.errors.InvalidInputError`."""
        base = base or cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown threshold {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
            )
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@frozen_record
class Finding:
    """One explained observation: its ``code``, a one-line ``summary``, the ``evidence``
    behind it (figures and names read from the store) and the ``mitigation``."""

    code: Code
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    mitigation: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``code``, ``summary``, ``evidence``, ``mitigation``."""
        return {
            "code": str(self.code),
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "mitigation": self.mitigation,
        }


def rank_findings(findings: list[Finding], *, terminal: bool) -> tuple[Finding, ...]:
    """``findings`` most important first (stable among equal codes), in the order of
    :data:`TERMINAL_RANK` or :data:`LIVE_RANK`."""
    order = _TERMINAL_RANK if terminal else _LIVE_RANK
    return tuple(sorted(findings, key=lambda f: order.get(f.code, len(order))))


@frozen_record
class Diagnosis:
    """Why one instance is (not) finishing. ``findings`` are ranked, never empty;
    ``verdict`` is the code of the first."""

    instance_id: str
    name: str
    status: str
    findings: tuple[Finding, ...]
    generated_at: float

    def __post_init__(self) -> None:
        if not self.findings:
            raise ValueError("a diagnosis needs at least one finding")

    @property
    def verdict(self) -> Code:
        """The code of the top finding."""
        return self.findings[0].code

    @property
    def top(self) -> Finding:
        """The top finding."""
        return self.findings[0]

    @property
    def stuck(self) -> bool:
        """True unless the instance is finished or healthy and progressing."""
        return self.verdict not in NOT_STUCK

    @property
    def codes(self) -> list[Code]:
        """The codes of all findings, in rank order."""
        return [f.code for f in self.findings]

    def finding(self, code: str) -> Finding | None:
        """The first finding with ``code``, or None."""
        return next((f for f in self.findings if f.code == code), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``perdure diagnose IID --json`` prints)."""
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status,
            "verdict": str(self.verdict),
            "stuck": self.stuck,
            "generated_at": iso(self.generated_at),
            "findings": [f.to_dict() for f in self.findings],
        }


@frozen_record
class StalledInstance:
    """One instance of the fleet report's "no progress" list, with its diagnosis's verdict
    and top summary."""

    instance_id: str
    name: str
    status: str
    no_progress_s: float
    verdict: Code
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status,
            "no_progress_s": round(self.no_progress_s, 3),
            "verdict": str(self.verdict),
            "summary": self.summary,
        }


@frozen_record
class Signal:
    """One row of the playbook's signal table, computed from the store: the ``value``
    observed and its ``state`` (``"normal"``, ``"watch"`` or ``"incident"``)."""

    signal: str
    value: str
    state: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"signal": self.signal, "value": self.value, "state": self.state, "hint": self.hint}


@frozen_record
class FleetReport:
    """The fleet-wide stuck report (``perdure diagnose`` without an id).

    - ``counts``: instances per orchestration name and status; ``totals`` per status.
    - ``running_age``: age distribution of RUNNING instances: ``count``, ``p50_s``,
      ``p95_s``, ``max_s`` and the ``oldest`` ids.
    - ``workers``: live workers (heartbeat, registered names, concurrency in use) and
      ``stale_workers`` (rows whose heartbeat stopped).
    - ``queues``: depth and age of the queues.
    - ``stalled``: live instances without progress for longer than ``stalled_after_s``,
      grouped by verdict (``stalled_total`` counts them all; at most ``limit`` are
      diagnosed).
    - ``signals``: the playbook's signal table; ``state`` is the worst signal state.
    """

    generated_at: float
    state: str
    totals: Mapping[str, int]
    counts: Mapping[str, Mapping[str, int]]
    running_age: Mapping[str, Any]
    workers: tuple[Mapping[str, Any], ...]
    stale_workers: tuple[Mapping[str, Any], ...]
    queues: Mapping[str, Any]
    stalled_after_s: float
    stalled_total: int
    stalled: Mapping[str, tuple[StalledInstance, ...]]
    signals: tuple[Signal, ...]

    @property
    def stuck(self) -> list[StalledInstance]:
        """The stalled instances whose verdict is not ``progressing``."""
        return [s for code, group in self.stalled.items() if code not in NOT_STUCK for s in group]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``perdure diagnose --json`` prints)."""
        return {
            "generated_at": iso(self.generated_at),
            "state": self.state,
            "totals": dict(self.totals),
            "counts": {name: dict(by) for name, by in self.counts.items()},
            "running_age": dict(self.running_age),
            "workers": [dict(w) for w in self.workers],
            "stale_workers": [dict(w) for w in self.stale_workers],
            "queues": dict(self.queues),
            "stalled_after_s": self.stalled_after_s,
            "stalled_total": self.stalled_total,
            "stalled": {str(code): [s.to_dict() for s in group] for code, group in self.stalled.items()},
            "signals": [s.to_dict() for s in self.signals],
        }
