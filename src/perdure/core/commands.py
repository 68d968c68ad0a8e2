"""Commands: what a turn asks the runtime to carry out, besides appending history.

The runtime turns each command into store writes that commit atomically with the turn
(invariant 1): an activity task row, a timer message, a child instance, a message to
another instance.
"""

from __future__ import annotations

from typing import Any

from perdure.core.failure import Failure
from perdure.core.history import HistoryEvent
from perdure.core.records import frozen_record


@frozen_record(kw_only=True)
class Command:
    """Base of all commands."""


@frozen_record(kw_only=True)
class ScheduleActivity(Command):
    """Enqueue activity ``name`` with ``input`` as task ``task_id`` of this execution."""

    task_id: int
    name: str
    input: Any = None
    attempt: int = 1


@frozen_record(kw_only=True)
class CreateTimer(Command):
    """Deliver ``TimerFired(task_id)`` to this execution at ``fire_at`` (UTC epoch seconds)."""

    task_id: int
    fire_at: float


@frozen_record(kw_only=True)
class StartSubOrchestration(Command):
    """Create child ``instance_id`` running ``name`` with ``input``; it reports to this
    execution's task ``task_id``. If the id is held by another instance, the runtime fails
    the task at once (invariant 4) instead of leaving the parent waiting. ``version``: the
    child's orchestration version (``None``: the latest of the worker that takes it)."""

    task_id: int
    name: str
    instance_id: str
    input: Any = None
    version: int | None = None


@frozen_record(kw_only=True)
class TerminateSubOrchestration(Command):
    """Terminate unfinished child ``instance_id``, started by this execution's task
    ``task_id`` (terminate cascades to children, and only to this instance's own: the
    message names the parent task, invariant 9)."""

    instance_id: str
    task_id: int
    reason: str | None = None


@frozen_record(kw_only=True)
class CompleteOrchestration(Command):
    """This execution completed with ``result``."""

    result: Any = None


@frozen_record(kw_only=True)
class FailOrchestration(Command):
    """This execution failed with ``failure``."""

    failure: Failure


@frozen_record(kw_only=True)
class TerminateOrchestration(Command):
    """This execution was terminated by an operator."""

    reason: str | None = None


@frozen_record(kw_only=True)
class ContinueAsNew(Command):
    """End this execution and start execution ``execution_id + 1`` with ``input``.

    ``carried`` are the messages this execution received but did not act on: external
    events it did not consume (unless the orchestrator passed ``carry_over_events=False``)
    and operator messages (terminate, suspend, resume) that came in the turn that continued
    as new, in arrival order. The new execution takes them first
    (:attr:`perdure.core.history.ExecutionStarted.carried`). ``version`` is the version the
    next execution runs.
    """

    input: Any = None
    carried: tuple[HistoryEvent, ...] = ()
    version: int = 1
