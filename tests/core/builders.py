"""History builders and a two-way scenario driver for the core tests.

Builders make transcripts read like history: ``turn(5.0)``, ``started("saga", 1)``,
``activity_completed(1, 42)``. :class:`Scenario` plays a transcript turn by turn on one live
executor *and* on a fresh executor that replays everything before each turn, asserting
both give the same turn, so every scenario also checks live == replay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from perdure.core.commands import ContinueAsNew
from perdure.core.executor import OrchestrationExecutor, execute
from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    EventRaised,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    MessageDiscarded,
    ParentRef,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
    TimerFired,
    TurnStarted,
)
from perdure.core.registry import App
from perdure.core.turn import Turn

# --- builders ----------------------------------------------------------------------------


def turn(at: float) -> TurnStarted:
    """The event opening a turn at ``at`` (epoch seconds)."""
    return TurnStarted(timestamp=at)


def started(
    name: str,
    input: Any = None,
    *,
    execution_id: int = 1,
    parent: ParentRef | None = None,
    run_id: str | None = None,
    carried: Sequence[HistoryEvent] = (),
) -> ExecutionStarted:
    """ExecutionStarted for orchestration ``name``."""
    return ExecutionStarted(
        name=name, input=input, execution_id=execution_id, parent=parent, run_id=run_id, carried=tuple(carried)
    )


def activity_scheduled(
    task: int, name: str, input: Any = None, *, attempt: int = 1, at: float = 0.0
) -> ActivityScheduled:
    """ActivityScheduled as the executor records it (``at`` = the turn's time)."""
    return ActivityScheduled(timestamp=at, task_id=task, name=name, input=input, attempt=attempt)


def activity_completed(task: int, result: Any = None) -> ActivityCompleted:
    """The activity scheduled as ``task`` returned ``result``."""
    return ActivityCompleted(task_id=task, result=result)


def failure(error_type: str = "ValueError", message: str = "boom", *, non_retryable: bool = False) -> Failure:
    """A captured error."""
    return Failure(error_type, message, None, None, non_retryable)


def activity_failed(
    task: int, error_type: str = "ValueError", message: str = "boom", *, non_retryable: bool = False
) -> ActivityFailed:
    """The activity scheduled as ``task`` raised."""
    return ActivityFailed(task_id=task, failure=failure(error_type, message, non_retryable=non_retryable))


def timer_created(task: int, fire_at: float, *, at: float = 0.0) -> TimerCreated:
    """TimerCreated as the executor records it."""
    return TimerCreated(timestamp=at, task_id=task, fire_at=fire_at)


def timer_fired(task: int) -> TimerFired:
    """The timer ``task`` came due."""
    return TimerFired(task_id=task)


def child_created(
    task: int, name: str, instance_id: str, input: Any = None, *, at: float = 0.0
) -> SubOrchestrationCreated:
    """SubOrchestrationCreated as the executor records it."""
    return SubOrchestrationCreated(timestamp=at, task_id=task, name=name, instance_id=instance_id, input=input)


def child_completed(task: int, result: Any = None) -> SubOrchestrationCompleted:
    """The child scheduled as ``task`` completed."""
    return SubOrchestrationCompleted(task_id=task, result=result)


def child_failed(task: int, error_type: str = "ValueError", message: str = "boom") -> SubOrchestrationFailed:
    """The child scheduled as ``task`` failed."""
    return SubOrchestrationFailed(task_id=task, failure=failure(error_type, message))


def event(name: str, input: Any = None) -> EventRaised:
    """External event ``name`` arrived."""
    return EventRaised(name=name, input=input)


def terminated(reason: str | None = None) -> ExecutionTerminated:
    """An operator terminated the instance."""
    return ExecutionTerminated(reason=reason)


def suspended(reason: str | None = None) -> ExecutionSuspended:
    """An operator suspended the instance."""
    return ExecutionSuspended(reason=reason)


def resumed(reason: str | None = None) -> ExecutionResumed:
    """An operator resumed the instance."""
    return ExecutionResumed(reason=reason)


def completed(result: Any = None, *, at: float = 0.0) -> ExecutionCompleted:
    """ExecutionCompleted as the executor records it."""
    return ExecutionCompleted(timestamp=at, result=result)


# --- reading results ---------------------------------------------------------------------


def kinds(events: Sequence[HistoryEvent]) -> list[str]:
    """The class names of ``events``, for compact assertions."""
    return [type(e).__name__ for e in events]


def of_type(events: Sequence[HistoryEvent], cls: type) -> list[Any]:
    """The events of class ``cls``."""
    return [e for e in events if isinstance(e, cls)]


def discards(events: Sequence[HistoryEvent]) -> list[tuple[str, str]]:
    """(reason, discarded kind) for every MessageDiscarded in ``events``."""
    return [(e.reason, e.message["kind"]) for e in events if isinstance(e, MessageDiscarded)]


COMPLETION_TYPES = (
    ActivityCompleted,
    ActivityFailed,
    TimerFired,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
)
COMMAND_EVENT_TYPES = (
    ActivityScheduled,
    TimerCreated,
    SubOrchestrationCreated,
    CustomStatusSet,
    ContinuedAsNew,
)


def comparable(t: Turn) -> Turn:
    """``t`` without the field that legitimately differs between live and full replay."""
    return dataclasses.replace(t, replayed_events=0)


# --- the two-way driver ------------------------------------------------------------------


class Scenario:
    """Plays one instance turn by turn, live and by full replay, asserting they agree.

    ``history`` is the current execution's history; ``turns`` every turn returned.
    """

    def __init__(self, app: App, instance_id: str = "order-1") -> None:
        self.app = app
        self.instance_id = instance_id
        self.live = OrchestrationExecutor(app, instance_id)
        self.history: list[HistoryEvent] = []
        self.turns: list[Turn] = []
        self.executions: list[list[HistoryEvent]] = []

    @property
    def last(self) -> Turn:
        """The latest turn."""
        return self.turns[-1]

    def start(self, name: str, input: Any = None, *, at: float = 100.0, parent: ParentRef | None = None) -> Turn:
        """The first turn: ExecutionStarted."""
        return self.turn(at, started(name, input, parent=parent))

    def turn(self, at: float, *messages: HistoryEvent) -> Turn:
        """One turn at time ``at`` delivering ``messages``; checks live == full replay."""
        new = [turn(at), *messages]
        replayed = execute(self.app, self.instance_id, list(self.history), new)
        live = self.live.execute((), new)
        assert comparable(live) == comparable(replayed), "live executor and full replay disagree"
        assert replayed.replayed_events == len(self.history)
        self.history.extend(live.new_events)
        assert self.live.history_length == len(self.history)
        self.turns.append(live)
        if self.live.is_finished:
            self._check_final_replay()
        return live

    def continue_as_new(self, at: float) -> Turn:
        """Start the next execution as the runtime would after a ContinueAsNew command."""
        command = next(c for c in self.last.commands if isinstance(c, ContinueAsNew))
        name = next(e.name for e in self.history if isinstance(e, ExecutionStarted))
        execution_id = self.last.execution_id + 1
        run_id = next(e.run_id for e in self.history if isinstance(e, ExecutionStarted))
        self.executions.append(self.history)
        self.live = OrchestrationExecutor(self.app, self.instance_id)
        self.history = []
        first = started(name, command.input, execution_id=execution_id, run_id=run_id, carried=command.carried)
        return self.turn(at, first)

    def _check_final_replay(self) -> None:
        final = execute(self.app, self.instance_id, list(self.history), ())
        assert final.new_events == () and final.commands == ()
        assert final.status == self.last.status
        assert final.output == self.last.output
        assert (final.failure is None) == (self.last.failure is None)


def final_failure_message(t: Turn) -> str:
    """The failure message of a FAILED turn."""
    assert t.failure is not None, f"turn did not fail: {t.status}"
    return t.failure.message


def failed_event(t: Turn) -> ExecutionFailed:
    """The ExecutionFailed event of a turn."""
    return of_type(t.new_events, ExecutionFailed)[0]
