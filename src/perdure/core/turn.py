"""The result of running one orchestration turn."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from perdure.core.commands import Command, ContinueAsNew
from perdure.core.failure import Failure
from perdure.core.history import HistoryEvent, ParentRef
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus


@frozen_record
class AwaitedActivity:
    """An activity the orchestrator is waiting on."""

    task_id: int
    name: str
    attempt: int
    scheduled_at: float


@frozen_record
class AwaitedTimer:
    """A timer the orchestrator is waiting on; ``purpose`` is ``"timer"``, ``"retry"`` or
    ``"timeout"``."""

    task_id: int
    fire_at: float
    purpose: str


@frozen_record
class AwaitedChild:
    """A sub-orchestration the orchestrator is waiting on."""

    task_id: int
    name: str
    instance_id: str
    scheduled_at: float


@frozen_record
class AwaitedEvent:
    """An external event the orchestrator is waiting on, since ``since`` (turn time), with an
    optional deadline ``timeout_at``."""

    name: str
    since: float
    timeout_at: float | None = None


@frozen_record
class WaitingOn:
    """Everything the orchestration is waiting on after a turn (invariant 8)."""

    activities: tuple[AwaitedActivity, ...] = ()
    timers: tuple[AwaitedTimer, ...] = ()
    children: tuple[AwaitedChild, ...] = ()
    events: tuple[AwaitedEvent, ...] = ()

    def is_empty(self) -> bool:
        """True when nothing is awaited."""
        return not (self.activities or self.timers or self.children or self.events)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored on the instance row."""
        return {
            "activities": [[a.task_id, a.name, a.attempt, a.scheduled_at] for a in self.activities],
            "timers": [[t.task_id, t.fire_at, t.purpose] for t in self.timers],
            "children": [[c.task_id, c.name, c.instance_id, c.scheduled_at] for c in self.children],
            "events": [[e.name, e.since, e.timeout_at] for e in self.events],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WaitingOn:
        """Read the JSON form (``None`` gives an empty value)."""
        if not data:
            return cls()
        return cls(
            tuple(AwaitedActivity(*row) for row in data.get("activities", ())),
            tuple(AwaitedTimer(*row) for row in data.get("timers", ())),
            tuple(AwaitedChild(*row) for row in data.get("children", ())),
            tuple(AwaitedEvent(*row) for row in data.get("events", ())),
        )


@frozen_record
class Turn:
    """What one turn produced.

    ``new_events`` is everything to append to the execution's history, in order: the turn's
    ``TurnStarted`` and consumed messages (minus discarded ones, replaced by
    ``MessageDiscarded`` records) interleaved with the events of new commands.
    ``status`` is the instance status after the turn: RUNNING or SUSPENDED while it goes on,
    COMPLETED / FAILED / TERMINATED when it ended; after a continue-as-new it is RUNNING and
    ``commands`` holds a :class:`ContinueAsNew`. ``version`` is the orchestration version the
    execution runs (``None`` before its ``ExecutionStarted`` was taken); ``trace`` the
    trace context its ``ExecutionStarted`` carries (:attr:`ExecutionStarted.trace`).
    """

    execution_id: int
    new_events: tuple[HistoryEvent, ...]
    commands: tuple[Command, ...]
    status: OrchestrationStatus
    output: Any = None
    failure: Failure | None = None
    custom_status: Any = None
    waiting_on: WaitingOn = field(default_factory=WaitingOn)
    parent: ParentRef | None = None
    replayed_events: int = 0
    version: int | None = None
    trace: dict[str, str] | None = None

    @property
    def continued_as_new(self) -> bool:
        """True if this turn ended the execution with continue-as-new."""
        return any(isinstance(c, ContinueAsNew) for c in self.commands)
