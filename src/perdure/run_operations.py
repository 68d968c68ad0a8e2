"""What :meth:`perdure.Client.rewind`, ``restart`` and ``reset`` hand to the store: the core's
plans (:mod:`perdure.core.rewind`) turned into store writes, for the run they apply to."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from perdure.core.history import HistoryEvent, ParentRef, TimerFired
from perdure.core.rewind import OpenWork, plan_reset, plan_rewind
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceStateError
from perdure.store.base import (
    InstanceRecord,
    LiveWork,
    Message,
    NewActivityTask,
    OpenChild,
    Reset,
    Rewind,
    Store,
)
from perdure.store.common.rows import new_run_id


def live_work(
    instance_id: str,
    run_id: str,
    execution_id: int,
    work: OpenWork,
    requeue: Sequence[HistoryEvent],
    status: OrchestrationStatus,
    *,
    recorded: tuple[str, int],
) -> LiveWork:
    """The store's form of a run's open ``work`` and the messages to queue to it again, for
    execution ``execution_id`` of run ``run_id``. ``recorded``: the run and execution that
    started the open children (as their rows name their parent)."""
    messages = [Message(instance_id, e, execution_id=execution_id, run_id=run_id) for e in requeue]
    messages += [
        Message(
            instance_id,
            TimerFired(task_id=t.task_id, fire_at=t.fire_at, timestamp=t.fire_at),
            execution_id=execution_id,
            visible_at=t.fire_at,
            run_id=run_id,
        )
        for t in work.timers
    ]
    activities = [
        NewActivityTask(instance_id, execution_id, a.task_id, a.name, a.input, a.attempt, run_id=run_id)
        for a in work.activities
    ]
    children = [
        OpenChild(
            c.instance_id,
            c.name,
            c.input,
            recorded=ParentRef(instance_id, recorded[1], c.task_id, recorded[0]),
            parent=ParentRef(instance_id, execution_id, c.task_id, run_id),
        )
        for c in work.children
    ]
    return LiveWork(status, work.waiting_on(), messages, activities, children)


def rewinds(
    store: Store, record: InstanceRecord, history: Sequence[HistoryEvent], *, reason: str | None, now: float
) -> list[Rewind]:
    """The rewind of the failed instance ``record`` (with its current ``history``), after the
    rewinds of the failed children it awaits (each of which its own children's first): a
    failed child is rewound too rather than run again, so the work it did is kept."""
    iid = record.instance_id
    try:
        plan = plan_rewind(history, reason=reason, now=now)
    except InstanceStateError as exc:
        raise InstanceStateError(f"cannot rewind instance {iid!r}: {exc}") from None
    batch: list[Rewind] = []
    for created in plan.work.children:
        child = store.get_instance(created.instance_id)
        task = ParentRef(iid, record.execution_id, created.task_id, record.run_id)
        if child is None or child.status is not OrchestrationStatus.FAILED or child.parent is None:
            continue
        if child.parent.is_task(task):
            events = [r.event for r in store.get_history(child.instance_id, execution_id=child.execution_id)]
            with contextlib.suppress(InstanceStateError):  # if it cannot be, it is started again
                batch += rewinds(store, child, events, reason=reason, now=now)
    work = live_work(
        iid,
        record.run_id,
        record.execution_id,
        plan.work,
        plan.requeue,
        plan.status,
        recorded=(record.run_id, record.execution_id),
    )
    batch.append(Rewind(iid, record.run_id, record.execution_id, record.history_event_count, plan.record, work))
    return batch


def reset(record: InstanceRecord, history: Sequence[HistoryEvent], to_turn: int, *, reason: str | None) -> Reset:
    """The reset of the terminal instance ``record`` (with its current ``history``) to the end
    of turn ``to_turn``: a new run of the id."""
    iid = record.instance_id
    run_id, execution_id = new_run_id(), record.execution_id + 1
    try:
        plan = plan_reset(
            history,
            to_turn,
            instance_id=iid,
            run_id=record.run_id,
            execution_id=record.execution_id,
            new_run_id=run_id,
            new_execution_id=execution_id,
            reason=reason,
        )
    except InstanceStateError as exc:
        raise InstanceStateError(f"cannot reset instance {iid!r}: {exc}") from None
    work = live_work(
        iid, run_id, execution_id, plan.work, plan.requeue, plan.status, recorded=(record.run_id, record.execution_id)
    )
    return Reset(
        iid,
        record.run_id,
        run_id,
        execution_id,
        record.name,
        record.input,
        plan.history,
        work,
        record.version,
        record.parent,
    )
