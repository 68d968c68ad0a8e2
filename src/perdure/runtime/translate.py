"""Turn → TurnCommit: what the core decided, as the store writes it (invariant 1)."""

from __future__ import annotations

from collections.abc import Mapping

from perdure.core.commands import (
    CompleteOrchestration,
    ContinueAsNew,
    CreateTimer,
    FailOrchestration,
    ScheduleActivity,
    StartSubOrchestration,
    TerminateOrchestration,
    TerminateSubOrchestration,
)
from perdure.core.failure import Failure
from perdure.core.history import (
    ExecutionFailed,
    ExecutionTerminated,
    HistoryEvent,
    ParentRef,
    TimerFired,
    TurnStarted,
)
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import Turn
from perdure.store.base import (
    ChildStart,
    Message,
    NewActivityTask,
    OrchestrationWorkItem,
    TurnCommit,
    TurnStats,
)
from perdure.store.common.rows import new_run_id


def turn_commit(
    item: OrchestrationWorkItem,
    turn: Turn,
    stats: TurnStats,
    event_json: Mapping[int, str] | None = None,
    *,
    release: bool = True,
    extend_lease: bool = True,
) -> TurnCommit:
    """The store write for ``turn``, run on the locked ``item``: its history events, status,
    and every outbound message, all consumed messages removed. ``event_json``: the stored
    JSON of events already encoded (:attr:`TurnCommit.event_json`); ``release`` and
    ``extend_lease``: see :class:`TurnCommit`."""
    iid, run = item.instance.instance_id, item.instance.run_id
    execution = turn.execution_id
    activities: list[NewActivityTask] = []
    messages: list[Message] = []
    children: list[ChildStart] = []
    continue_as_new = False
    new_input = None
    new_version = None
    carried: tuple[HistoryEvent, ...] = ()
    for command in turn.commands:
        match command:
            case ScheduleActivity(task_id=task_id, name=name, input=data, attempt=attempt):
                activities.append(NewActivityTask(iid, execution, task_id, name, data, attempt, run_id=run))
            case CreateTimer(task_id=task_id, fire_at=fire_at):
                event = TimerFired(task_id=task_id, fire_at=fire_at, timestamp=fire_at)
                messages.append(Message(iid, event, execution_id=execution, visible_at=fire_at, run_id=run))
            case StartSubOrchestration(task_id=task_id, name=name, instance_id=child_id, input=data, version=v):
                parent = ParentRef(iid, execution, task_id, run)
                trace = child_trace(turn, run)
                children.append(ChildStart(child_id, name, data, parent, run_id=new_run_id(), version=v, trace=trace))
            case TerminateSubOrchestration(instance_id=child_id, task_id=task_id, reason=reason):
                # Whatever run of the id is current gets it, and applies it only if that run
                # is this task's child (invariant 9).
                parent = ParentRef(iid, execution, task_id, run)
                event = ExecutionTerminated(reason=reason, parent=parent, timestamp=turn_time(turn))
                messages.append(Message(child_id, event))
            case CompleteOrchestration() | FailOrchestration() | TerminateOrchestration():
                pass  # the store tells the parent: see perdure.store.common.routing.parent_report
            case ContinueAsNew(input=data, carried=events, version=v):
                continue_as_new, new_input, carried, new_version = True, data, events, v
            case _:
                raise TypeError(f"unknown command {command!r}")
    return TurnCommit(
        instance_id=iid,
        lease_token=item.lease_token,
        execution_id=execution,
        run_id=run,
        new_events=turn.new_events,
        consumed=[m.message_id for m in item.messages],
        handed_over=item.handed_over,
        may_report=item.instance.parent is not None,
        status=turn.status,
        output=turn.output,
        failure=turn.failure,
        custom_status=turn.custom_status,
        waiting_on=turn.waiting_on,
        activities=activities,
        messages=messages,
        children=children,
        continue_as_new=continue_as_new,
        continue_as_new_input=new_input,
        continue_as_new_version=new_version,
        continue_as_new_trace=turn.trace if continue_as_new else None,
        version=turn.version,
        carried=carried,
        stats=stats,
        event_json=event_json or {},
        release=release,
        extend_lease=extend_lease,
    )


#: The carrier key that names the run a trace was derived from, when the run at its root
#: had no caller's trace context (:func:`child_trace`).
ROOT_RUN_KEY = "perdure-root-run"


def child_trace(turn: Turn, run_id: str | None) -> dict[str, str] | None:
    """The trace context a child run of ``turn``'s run carries: its parent's, so the child
    belongs to the same trace. A parent without one started its own trace, whose id is
    derived from its run token: the child carries that token (:data:`ROOT_RUN_KEY`)."""
    if turn.trace is not None:
        return turn.trace
    return None if run_id is None else {ROOT_RUN_KEY: run_id}


def turn_time(turn: Turn) -> float:
    """The turn's timestamp (its ``TurnStarted``)."""
    for event in turn.new_events:
        if isinstance(event, TurnStarted):
            return event.timestamp
    return 0.0


def failing_commit(item: OrchestrationWorkItem, failure: Failure, now: float) -> TurnCommit:
    """A commit that fails the instance without running user code: for a missing
    registration, a corrupt history or an engine error. The consumed messages are recorded
    in history first so nothing is lost silently."""
    instance = item.instance
    events: list[HistoryEvent] = [TurnStarted(timestamp=now)]
    events.extend(m.event for m in item.messages)
    events.append(ExecutionFailed(failure=failure, timestamp=now))
    return TurnCommit(
        instance_id=instance.instance_id,
        lease_token=item.lease_token,
        execution_id=instance.execution_id,
        run_id=instance.run_id,
        new_events=events,
        consumed=[m.message_id for m in item.messages],
        handed_over=item.handed_over,
        may_report=instance.parent is not None,
        status=OrchestrationStatus.FAILED,
        failure=failure,
        custom_status=instance.custom_status,
    )
