"""Helpers of the conformance suite: drive a store by hand, without an executor."""

from __future__ import annotations

from typing import Any

from perdure.core.history import (
    ActivityCompleted,
    EventRaised,
    TurnStarted,
)
from perdure.core.status import OrchestrationStatus
from perdure.store.base import (
    ActivityCompletion,
    Message,
    NewActivityTask,
    NewInstance,
    OrchestrationWorkItem,
    Outcome,
    Store,
    TurnCommit,
)

RUNNING = OrchestrationStatus.RUNNING
COMPLETED = OrchestrationStatus.COMPLETED
LEASE = 30.0


def start(
    store: Store,
    iid: str = "i1",
    name: str = "wf",
    input: Any = None,
    *,
    replace_terminal: bool = False,
    **kw: Any,
) -> None:
    """Create instance ``iid``."""
    store.create_instance(NewInstance(iid, name, input, **kw), replace_terminal=replace_terminal)


def lock(store: Store, owner: str = "w1", **kw: Any) -> list[OrchestrationWorkItem]:
    """Lock up to 10 instances."""
    kw.setdefault("lease_seconds", LEASE)
    kw.setdefault("limit", 10)
    return store.lock_orchestrations(owner, **kw)


def lock_one(store: Store, iid: str, owner: str = "w1", **kw: Any) -> OrchestrationWorkItem:
    """Lock instance ``iid``, which must be available."""
    items = lock(store, owner, instance_ids=[iid], **kw)
    assert [i.instance.instance_id for i in items] == [iid]
    return items[0]


def turn(item: OrchestrationWorkItem, **kw: Any) -> TurnCommit:
    """A turn applying every message of ``item`` (RUNNING unless told otherwise)."""
    events = [TurnStarted(timestamp=1.0), *(m.event for m in item.messages)]
    kw.setdefault("new_events", events)
    kw.setdefault("consumed", [m.message_id for m in item.messages])
    kw.setdefault("status", RUNNING)
    kw.setdefault("run_id", item.instance.run_id)
    return TurnCommit(
        instance_id=item.instance.instance_id,
        lease_token=item.lease_token,
        execution_id=item.instance.execution_id,
        **kw,
    )


def commit(store: Store, item: OrchestrationWorkItem, **kw: Any) -> Outcome:
    """Commit one :func:`turn`; return its outcome."""
    [outcome] = store.commit_turns([turn(item, **kw)])
    return outcome


def running(store: Store, iid: str = "i1", **kw: Any) -> OrchestrationWorkItem:
    """Create ``iid`` and commit its first turn (RUNNING, lease released)."""
    start(store, iid, **kw)
    item = lock_one(store, iid)
    assert commit(store, item) is Outcome.OK
    return item


def raise_event(store: Store, iid: str = "i1", name: str = "E", execution_id: int | None = None, **kw: Any) -> None:
    """Enqueue ``EventRaised(name)`` to ``iid``."""
    store.enqueue_messages([Message(iid, EventRaised(timestamp=1.0, name=name), execution_id, **kw)])


def task(iid: str = "i1", task_id: int = 1, name: str = "act", execution_id: int = 1, **kw: Any) -> NewActivityTask:
    """An activity task for ``iid``."""
    return NewActivityTask(iid, execution_id, task_id, name, {"n": task_id}, **kw)


def done(item: Any, result: Any = "ok") -> ActivityCompletion:
    """The completion of a locked activity task."""
    return ActivityCompletion(
        item.task_row_id,
        item.lease_token,
        ActivityCompleted(timestamp=2.0, task_id=item.task_id, result=result),
    )


def kinds(events: Any) -> list[str]:
    """Class names of events (or of records' events)."""
    return [type(getattr(e, "event", e)).__name__ for e in events]
