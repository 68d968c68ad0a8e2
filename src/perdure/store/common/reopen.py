"""Rewind and reset in the store, the rules both stores share: when a rewind or a reset may
apply, what becomes of the children the run still awaits, and the write that makes the run
live, as a turn's commit (so it is written by the same code as every turn)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import Enum

from perdure.core.failure import Failure
from perdure.core.history import HistoryEvent, ParentRef
from perdure.core.payload import loads_payload
from perdure.core.rewind import child_outcome
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceStateError
from perdure.store.base import ChildStart, LiveWork, Message, NewInstance, OpenChild, Reset, Rewind, TurnCommit
from perdure.store.common.rows import STATUS, TERMINAL, Row, new_run_id, parent_of

#: Discard detail of what was queued for an instance while it was FAILED.
REWIND_DETAIL = "queued while the instance was FAILED; a rewind made it live again without it"


class ChildLink(Enum):
    """What a rewound or reset run does about a child it awaits (:class:`OpenChild`)."""

    KEEP = "keep"  # still the task's and not ended: it reports to the run's task
    REPORT = "report"  # the task's and completed: its result is queued to the run
    START = "start"  # ended otherwise, gone, or the id is another's: started again


def check_rewindable(row: Row | None, rewind: Rewind) -> None:
    """Raise :class:`InstanceStateError` unless ``row`` is still the failed execution the
    rewind was planned from."""
    iid = rewind.instance_id
    if row is None:
        raise InstanceStateError(f"cannot rewind instance {iid!r}: it no longer exists")
    if row["status"] != OrchestrationStatus.FAILED.value:
        raise InstanceStateError(f"cannot rewind instance {iid!r}: it is {row['status']}, not FAILED")
    if (row["run_id"], row["execution_id"], row["history_event_count"]) != (
        rewind.run_id,
        rewind.execution_id,
        rewind.history_event_count,
    ):
        raise InstanceStateError(f"cannot rewind instance {iid!r}: it changed while the rewind was planned; try again")


def check_replaced_run(row: Row | None, instance_id: str, run_id: str, what: str) -> None:
    """Raise :class:`InstanceStateError` unless ``row`` holds the terminal run ``run_id``
    that ``what`` (a restart, a reset) replaces."""
    if row is None or row["run_id"] != run_id:
        raise InstanceStateError(
            f"cannot {what} instance {instance_id!r}: the run it was planned from is no longer the "
            f"instance's (it was purged or started again meanwhile); try again"
        )
    if row["status"] not in TERMINAL:
        raise InstanceStateError(
            f"cannot {what} instance {instance_id!r} in place: it is {row['status']}; terminate it first"
        )


def check_new_instance(row: Row | None, instance: NewInstance) -> None:
    """A start that names the run it replaces (:attr:`NewInstance.replaces_run`) applies only
    over that terminal run."""
    if instance.replaces_run is not None:
        check_replaced_run(row, instance.instance_id, instance.replaces_run, "restart")


def check_resettable(row: Row | None, reset: Reset) -> None:
    """Raise :class:`InstanceStateError` unless ``row`` holds the terminal run the reset
    replaces, and its execution is the one before the reset's."""
    check_replaced_run(row, reset.instance_id, reset.replaces_run, "reset")
    assert row is not None
    if row["execution_id"] + 1 != reset.execution_id:
        raise InstanceStateError(f"cannot reset instance {reset.instance_id!r}: it changed meanwhile; try again")


def child_link(row: Row | None, child: OpenChild) -> ChildLink:
    """What becomes of ``child`` (its instance ``row``, if any): see :class:`ChildLink`."""
    if row is None:
        return ChildLink.START
    parent = parent_of(row)
    if parent is None or not parent.is_task(child.recorded):
        return ChildLink.START
    if row["status"] not in TERMINAL:
        return ChildLink.KEEP
    return ChildLink.REPORT if row["status"] == OrchestrationStatus.COMPLETED.value else ChildLink.START


def settle_children(
    children: Sequence[OpenChild],
    read_row: Callable[[str], Row | None],
    set_parent: Callable[[str, ParentRef], object],
    now: float,
) -> tuple[list[Message], list[ChildStart]]:
    """Decide the fate of each open child (:func:`child_link`), reading its row with
    ``read_row`` (locked, where the backend locks rows) and re-attaching a kept one with
    ``set_parent``: the results to queue to the run, and the children to start again."""
    messages: list[Message] = []
    starts: list[ChildStart] = []
    for child in children:
        row = read_row(child.instance_id)
        link = child_link(row, child)
        if link is ChildLink.KEEP and parent_of(row) != child.parent:  # type: ignore[arg-type]
            set_parent(child.instance_id, child.parent)
        elif link is ChildLink.REPORT:
            messages.append(report(row, child.parent, now))  # type: ignore[arg-type]
        elif link is ChildLink.START:
            starts.append(restart_child(child))
    return messages, starts


def report(row: Row, parent: ParentRef, now: float) -> Message:
    """The completed child ``row``'s result, to the task ``parent`` that awaits it."""
    failure = row["failure"]
    event = child_outcome(
        row["instance_id"],
        STATUS[row["status"]],
        loads_payload(row["output"]),
        Failure.from_dict(json.loads(failure)) if failure else None,
        parent.task_id,
        now,
    )
    return Message(parent.instance_id, event, execution_id=parent.execution_id, run_id=parent.run_id)


def restart_child(child: OpenChild) -> ChildStart:
    """``child`` started again, as a new run, by the task that awaits it."""
    return ChildStart(
        child.instance_id, child.name, child.input, child.parent, run_id=new_run_id(), version=child.version
    )


def live_commit(
    row: Row,
    events: list[HistoryEvent],
    work: LiveWork,
    *,
    read_row: Callable[[str], Row | None],
    set_parent: Callable[[str, ParentRef], object],
    now: float,
) -> TurnCommit:
    """The write that makes the run of the instance ``row`` live, as a turn's commit:
    ``events`` appended, the work's status and awaited work recorded (output and failure
    cleared), its messages and the results of children it awaits (:func:`settle_children`,
    with ``read_row`` and ``set_parent``) queued, its activities scheduled and the children
    to start again started. It holds no lease: none is taken or released."""
    reports, children = settle_children(work.children, read_row, set_parent, now)
    return TurnCommit(
        instance_id=row["instance_id"],
        lease_token="",
        execution_id=row["execution_id"],
        run_id=row["run_id"],
        new_events=events,
        consumed=(),
        status=work.status,
        custom_status=loads_payload(row["custom_status"]),
        waiting_on=work.waiting_on,
        activities=work.activities,
        messages=[*work.messages, *reports],
        children=children,
    )
