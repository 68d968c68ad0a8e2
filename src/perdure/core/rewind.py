"""Rewind and reset, as history: what undoing a failed turn, or going back to the end of an
earlier turn, leaves of an execution, and the work that makes what is left live again.

Histories stay append-only. A rewind appends an :class:`ExecutionRewound` record that undoes
the events of the failed turn before it; :func:`effective_history` is the history replay
sees. A reset copies the history up to a turn into a new run. Either way the execution
then awaits what its remaining history awaits (:class:`OpenWork`): the store schedules those
activities again, arms those timers again and re-attaches those children, and queues again
the messages that must still reach it. Pure functions: no store, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    DiscardReason,
    EventRaised,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionRewound,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    MessageDiscarded,
    PatchMarker,
    RunOrigin,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
    TimerFired,
    TurnStarted,
    decode_event,
)
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import AwaitedActivity, AwaitedChild, AwaitedTimer, WaitingOn
from perdure.errors import InstanceStateError

#: The failure type of a child that was terminated, as its parent's task sees it.
TERMINATED_TYPE = "perdure.Terminated"

_OUTPUTS = (ActivityScheduled, TimerCreated, SubOrchestrationCreated, ExecutionCompleted, ExecutionFailed)
_ENDINGS = (ExecutionCompleted, ExecutionFailed, ContinuedAsNew)
_COMPLETIONS = (ActivityCompleted, ActivityFailed, TimerFired, SubOrchestrationCompleted, SubOrchestrationFailed)
_NOT_MESSAGES = (TurnStarted, CustomStatusSet, MessageDiscarded, PatchMarker, *_OUTPUTS, ContinuedAsNew)


def effective_history(events: Sequence[HistoryEvent]) -> list[tuple[int, HistoryEvent]]:
    """``(stored index, event)`` of the events that count: every :class:`ExecutionRewound`
    record removes itself and the events it undid."""
    kept: list[tuple[int, HistoryEvent]] = []
    for index, event in enumerate(events):
        if isinstance(event, ExecutionRewound):
            while kept and kept[-1][0] >= event.undone_from:
                kept.pop()
            continue
        kept.append((index, event))
    return kept


def turn_numbers(events: Sequence[HistoryEvent]) -> list[int]:
    """The turn each stored event belongs to: 1 for the first ``TurnStarted`` and what
    follows it, and so on (0 before the first). :func:`plan_reset` counts turns this way, as
    ``perdure history`` shows them."""
    numbers, turn = [], 0
    for event in events:
        if isinstance(event, TurnStarted):
            turn += 1
        numbers.append(turn)
    return numbers


@frozen_record
class OpenWork:
    """What a history awaits that it has not received: activities, timers and children it
    scheduled without an outcome."""

    activities: tuple[ActivityScheduled, ...] = ()
    timers: tuple[TimerCreated, ...] = ()
    children: tuple[SubOrchestrationCreated, ...] = ()

    def waiting_on(self) -> WaitingOn:
        """The same as the instance row's ``waiting_on`` (until the next turn records what
        the code awaits)."""
        return WaitingOn(
            tuple(AwaitedActivity(a.task_id, a.name, a.attempt, a.timestamp) for a in self.activities),
            tuple(AwaitedTimer(t.task_id, t.fire_at, "timer") for t in self.timers),
            tuple(AwaitedChild(c.task_id, c.name, c.instance_id, c.timestamp) for c in self.children),
        )


def open_work(events: Sequence[HistoryEvent], arriving: Sequence[HistoryEvent] = ()) -> OpenWork:
    """What ``events`` scheduled and neither they nor the messages ``arriving`` complete."""
    done = {e.task_id for e in (*events, *arriving) if isinstance(e, _COMPLETIONS)}  # type: ignore[attr-defined]
    scheduled = [e for e in events if isinstance(e, (ActivityScheduled, TimerCreated, SubOrchestrationCreated))]
    open_ = [e for e in scheduled if e.task_id not in done]
    return OpenWork(
        tuple(e for e in open_ if isinstance(e, ActivityScheduled)),
        tuple(e for e in open_ if isinstance(e, TimerCreated)),
        tuple(e for e in open_ if isinstance(e, SubOrchestrationCreated)),
    )


def status_of(events: Sequence[HistoryEvent]) -> OrchestrationStatus:
    """The status of a live execution with history ``events``: PENDING before it started,
    SUSPENDED if an operator suspended it last, else RUNNING."""
    if not any(isinstance(e, ExecutionStarted) for e in events):
        return OrchestrationStatus.PENDING
    for event in reversed(events):
        if isinstance(event, ExecutionSuspended):
            return OrchestrationStatus.SUSPENDED
        if isinstance(event, ExecutionResumed):
            break
    return OrchestrationStatus.RUNNING


@frozen_record
class RewindPlan:
    """How to rewind a failed execution: append ``record`` (it undoes the failed turn), queue
    ``requeue`` again (the messages that turn had taken, in order, but the failed outcomes)
    and make ``work`` live again (what the rest awaits: the failed activity or child
    among it); the instance is then ``status`` and awaits ``work.waiting_on()``."""

    record: ExecutionRewound
    requeue: tuple[HistoryEvent, ...]
    work: OpenWork
    status: OrchestrationStatus


def plan_rewind(events: Sequence[HistoryEvent], *, reason: str | None = None, now: float = 0.0) -> RewindPlan:
    """The rewind of a failed execution with history ``events``: its last turn, the one that
    failed, is undone. Raises :class:`~perdure.errors.InstanceStateError` if the execution
    did not fail in a turn."""
    kept = effective_history(events)
    failed = next((i for i in range(len(kept) - 1, -1, -1) if isinstance(kept[i][1], ExecutionFailed)), None)
    if failed is None:
        raise InstanceStateError("its history does not end in a failure")
    start = next((i for i in range(failed, -1, -1) if isinstance(kept[i][1], TurnStarted)), None)
    if start is None:
        raise InstanceStateError("its failure was not recorded by a turn")
    failure = kept[failed][1].failure  # type: ignore[attr-defined]
    remaining = [e for _, e in kept[:start]]
    requeue: list[HistoryEvent] = []
    for _, event in kept[start:]:
        if isinstance(event, MessageDiscarded):
            if event.reason == DiscardReason.AFTER_COMPLETION:  # it came after the failure
                requeue.append(decode_event(event.message))
        elif not isinstance(event, (ActivityFailed, SubOrchestrationFailed, *_NOT_MESSAGES)):
            requeue.append(event)
    record = ExecutionRewound(timestamp=now, undone_from=kept[start][0], failure=failure, reason=reason)
    return RewindPlan(record, tuple(requeue), open_work(remaining, requeue), status_of(remaining))


@frozen_record
class ResetPlan:
    """How to reset a run to the end of a turn: the new run's ``history`` (the source's up
    to there, its ``ExecutionStarted`` naming the new run and where it came from), the
    messages to queue to it (``requeue``: the external events the source received later,
    in order), what it awaits (``work``) and its ``status``."""

    history: tuple[HistoryEvent, ...]
    requeue: tuple[HistoryEvent, ...]
    work: OpenWork
    status: OrchestrationStatus


def plan_reset(
    events: Sequence[HistoryEvent],
    to_turn: int,
    *,
    instance_id: str,
    run_id: str,
    execution_id: int,
    new_run_id: str,
    new_execution_id: int,
    reason: str | None = None,
) -> ResetPlan:
    """A new run of ``instance_id`` whose history is that of execution ``execution_id`` of run
    ``run_id`` (``events``) up to the end of turn ``to_turn`` (counted as
    :func:`turn_numbers` does). Raises :class:`~perdure.errors.InstanceStateError` for a turn
    the history does not have, that a rewind undid, or by which the execution had ended."""
    starts = [i for i, e in enumerate(events) if isinstance(e, TurnStarted)]
    if isinstance(to_turn, bool) or not isinstance(to_turn, int) or not 1 <= to_turn <= len(starts):
        raise InstanceStateError(f"its history has turns 1 to {len(starts)}, not {to_turn!r}")
    everything = effective_history(events)
    if starts[to_turn - 1] not in {i for i, _ in everything}:
        raise InstanceStateError(f"turn {to_turn} was undone by a rewind; reset to another turn")
    end = starts[to_turn] if to_turn < len(starts) else len(events)
    kept = [e for i, e in everything if i < end]
    if any(isinstance(e, (*_ENDINGS, ExecutionTerminated)) for e in kept):
        raise InstanceStateError(f"the execution had ended by turn {to_turn}; reset to an earlier turn")
    first = next((i for i, e in enumerate(kept) if isinstance(e, ExecutionStarted)), None)
    if first is None:
        raise InstanceStateError(f"the execution had not started by turn {to_turn}; restart it instead")
    started = kept[first]
    assert isinstance(started, ExecutionStarted)
    seed = started.origin.seed_execution if started.origin and started.origin.seed_execution else execution_id
    origin = RunOrigin("reset", instance_id, run_id, execution_id, to_turn, reason, seed)
    kept[first] = replace(started, run_id=new_run_id, execution_id=new_execution_id, origin=origin)
    later = [e for i, e in everything if i >= end and isinstance(e, EventRaised)]
    return ResetPlan(tuple(kept), tuple(later), open_work(kept), status_of(kept))


def child_outcome(
    child_id: str, status: OrchestrationStatus, output: Any, failure: Failure | None, task_id: int, timestamp: float
) -> HistoryEvent:
    """The message a child that ended with ``status`` sends to the parent task ``task_id``
    that started it: its result, its failure, or (terminated) a failure naming the reason
    (``output`` holds a terminated instance's reason)."""
    if status is OrchestrationStatus.COMPLETED:
        return SubOrchestrationCompleted(task_id=task_id, result=output, timestamp=timestamp)
    if status is OrchestrationStatus.FAILED and failure is not None:
        return SubOrchestrationFailed(task_id=task_id, failure=failure, timestamp=timestamp)
    text = f"sub-orchestration {child_id!r} was terminated" + (f": {output}" if output else "")
    return SubOrchestrationFailed(task_id=task_id, failure=Failure(TERMINATED_TYPE, text), timestamp=timestamp)
