"""Replay histories against an app's code, offline: would the code reproduce them?

Each execution's history is fed to the replay executor exactly as a worker's full replay
does (:class:`perdure.core.executor.OrchestrationExecutor`), in this process: the
orchestration code runs, activities and local activities never do (replay only hands the
code their recorded results), and nothing is written anywhere. What the executor would
fail with :class:`~perdure.errors.NonDeterminismError` is reported with its position and
both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from perdure.core.executor import OrchestrationExecutor
from perdure.core.history import (
    ContinuedAsNew,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionTerminated,
    HistoryEvent,
    TurnStarted,
)
from perdure.core.records import frozen_record
from perdure.core.registry import App, Registration
from perdure.core.status import OrchestrationStatus
from perdure.errors import RegistrationError
from perdure.replay.histories import ExecutionHistory

#: Events that end an execution (one of them is in the last turn of an ended execution).
_ENDINGS = (ExecutionCompleted, ExecutionFailed, ExecutionTerminated, ContinuedAsNew)


class Problem(StrEnum):
    """Why an execution would not replay."""

    NONDETERMINISM = "nondeterminism"  # the code does not reproduce the recorded commands
    NOT_REGISTERED = "not_registered"  # the app has no orchestration for it
    UNDECODABLE = "undecodable"  # its history cannot be decoded
    ERROR = "error"  # the replay itself failed (an inconsistent history)


@frozen_record
class ReplayResult:
    """How one execution's history replayed against the code.

    ``problem`` is None when the code reproduces the history; otherwise a :class:`Problem`
    with a one-line ``message`` (for nondeterminism, the executor's own message). For
    nondeterminism, ``position`` is the index in the execution's history where replay
    stopped matching, ``recorded`` what the history holds there and ``produced`` what the
    code does now. ``note`` says when only part of the history was replayed (an execution
    that has ended is replayed up to its last turn: see :func:`replayed_part`)."""

    instance_id: str
    name: str
    execution_id: int
    run_id: str
    status: OrchestrationStatus | None
    source: str
    replayed_events: int
    problem: Problem | None = None
    message: str | None = None
    position: int | None = None
    recorded: str | None = None
    produced: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        """True if the code reproduces the history."""
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``perdure replay-check --json``)."""
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "execution_id": self.execution_id,
            "run_id": self.run_id,
            "status": None if self.status is None else self.status.value,
            "source": self.source,
            "replayed_events": self.replayed_events,
            "ok": self.ok,
            "problem": None if self.problem is None else self.problem.value,
            "message": self.message,
            "position": self.position,
            "recorded": self.recorded,
            "produced": self.produced,
            "note": self.note,
        }

    def describe(self) -> list[str]:
        """The problem in a few lines: whose execution, what, and for nondeterminism the
        position with what history recorded and what the code does now."""
        facts = [self.name, f"execution {self.execution_id}"]
        if self.status is not None:
            facts.append(self.status.value)
        if self.source != "store":
            facts.append(f"from {self.source}")
        head = f"{self.instance_id} ({', '.join(facts)})"
        if self.ok:
            return [f"{head} replays" + (f" ({self.note})" if self.note else "")]
        if self.problem is Problem.NONDETERMINISM:
            where = f" at history index {self.position}" if self.position is not None else ""
            lines = [f"{head} would not replay: nondeterminism{where}"]
            if self.recorded is not None:
                lines.append(f"    recorded: {self.recorded}")
            if self.produced is not None:
                lines.append(f"    now:      {self.produced}")
            if self.recorded is None and self.produced is None and self.message:
                lines.append(f"    {self.message}")
            return lines
        label = {Problem.NOT_REGISTERED: "not registered", Problem.UNDECODABLE: "undecodable history"}
        return [f"{head} would not replay: {label.get(self.problem, 'replay failed')}: {self.message}"]


@frozen_record
class ReplayReport:
    """The results of a replay check, one per execution, in the order checked."""

    results: tuple[ReplayResult, ...]

    @property
    def ok(self) -> bool:
        """True if every execution replays (also when there was none)."""
        return all(r.ok for r in self.results)

    @property
    def problems(self) -> list[ReplayResult]:
        """The executions that would not replay."""
        return [r for r in self.results if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``ok``, counts, and every result."""
        return {
            "ok": self.ok,
            "executions": len(self.results),
            "instances": len({(r.source, r.instance_id) for r in self.results}),
            "problems": len(self.problems),
            "results": [r.to_dict() for r in self.results],
        }

    def text(self) -> str:
        """The report as text: each execution that would not replay, then a summary line."""
        lines = [line for r in self.problems for line in r.describe()]
        total, bad = len(self.results), len(self.problems)
        executions = "execution" if total == 1 else "executions"
        if not total:
            lines.append("nothing to check: no execution was given")
        elif not bad:
            lines.append(f"all {total} {executions} replay" if total > 1 else f"the {executions} replays")
        else:
            kinds = sorted({r.problem.value.replace("_", " ") for r in self.problems if r.problem})
            lines.append(f"{bad} of {total} {executions} would not replay ({', '.join(kinds)})")
        return "\n".join(lines)


def registration_for(app: App, name: str, started: ExecutionStarted | None) -> Registration | None:
    """The registration of ``app`` that replays an execution of orchestration ``name``
    started by ``started`` (None if its history does not hold the start), or None if the
    app has none: the version the execution runs (the latest registered when the history
    does not say). The one place that choice is made for the replay check."""
    if started is None:
        return app.orchestrations.get(name)
    version = started.version
    versions = app.orchestration_versions.get(started.name, {})
    return app.orchestrations.get(started.name) if version is None else versions.get(version)


def replayed_part(events: Sequence[HistoryEvent]) -> tuple[Sequence[HistoryEvent], str | None]:
    """The part of an execution's history the check replays, and a note when that is not
    all of it. A running execution is replayed whole. One that has ended (completed,
    failed, terminated or continued as new) is replayed up to the start of its last turn:
    that turn can never be replayed again, and every point where a running instance on the
    same path can be lies before it. (So an execution the engine failed, for
    nondeterminism say, is checked on what its code did before that.)"""
    end = next((i for i, event in enumerate(events) if isinstance(event, _ENDINGS)), None)
    if end is None:
        return events, None
    start = max((i for i in range(end) if isinstance(events[i], TurnStarted)), default=0)
    return events[:start], f"it has ended: replayed up to its last turn, at index {start}"


def replay_execution(app: App, history: ExecutionHistory) -> ReplayResult:
    """Replay one execution's history against ``app``'s code and say whether it reproduces
    it. Nothing but the orchestration code runs, and nothing is written."""

    def result(
        replayed: int = 0, problem: Problem | None = None, message: str | None = None, **more: Any
    ) -> ReplayResult:
        return ReplayResult(
            history.instance_id,
            history.name,
            history.execution_id,
            history.run_id,
            history.status,
            history.source,
            replayed,
            problem,
            message,
            **more,
        )

    if history.error is not None:
        return result(problem=Problem.UNDECODABLE, message=history.error)
    events, note = replayed_part(history.events)
    started = next((e for e in history.events if isinstance(e, ExecutionStarted)), None)
    name = started.name if started is not None else history.name
    if registration_for(app, name, started) is None:
        message = _unregistered(app, name, started.version if started is not None else None)
        return result(problem=Problem.NOT_REGISTERED, message=message, note=note)
    executor = OrchestrationExecutor(app, history.instance_id)
    try:
        executor.execute(events, ())
    except RegistrationError as exc:
        return result(problem=Problem.NOT_REGISTERED, message=str(exc), note=note)
    except Exception as exc:  # an inconsistent history the executor refuses
        return result(problem=Problem.ERROR, message=f"{type(exc).__name__}: {exc}", note=note)
    error = executor.divergence
    if error is None:
        return result(len(events), note=note)
    return result(
        len(events),
        Problem.NONDETERMINISM,
        str(error),
        position=error.position,
        recorded=error.recorded,
        produced=error.produced,
        note=note,
    )


def replay_histories(app: App, histories: Iterable[ExecutionHistory]) -> ReplayReport:
    """Replay each history (:func:`replay_execution`) and collect the results."""
    return ReplayReport(tuple(replay_execution(app, h) for h in histories))


def _unregistered(app: App, name: str, version: int | None) -> str:
    versions = app.orchestration_versions.get(name)
    if versions:
        known_versions = ", ".join(str(v) for v in sorted(versions))
        return (
            f"the instance runs version {version} of orchestration {name!r}, which the app no longer "
            f"registers (it registers versions {known_versions}): keep version {version} registered "
            f"until its instances finish"
        )
    known = ", ".join(sorted(app.orchestrations)) or "none"
    return f"the app registers no orchestration named {name!r} (it registers: {known})"
