"""Conformance: ``create_and_lock``, a start handed to a worker of the caller's process (the
new instances locked for it in the transaction that creates them)."""

from __future__ import annotations

from typing import Any

import pytest

from perdure.errors import InstanceExistsError
from perdure.store.base import NewInstance, OrchestrationWorkItem, Outcome, Store
from perdure.store.notify import INSTANCES, ORCHESTRATIONS
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    RUNNING,
    commit,
    kinds,
    lock,
    lock_one,
    raise_event,
    start,
)
from perdure.testing.faults import FailAt, FakeClock, InjectedFault


def handed(store: Store, *iids: str, names: Any = None, **kw: Any) -> list[OrchestrationWorkItem]:
    """``create_and_lock`` of ``iids`` (workflow ``wf``) for worker ``w1``."""
    replace_terminal = kw.pop("replace_terminal", False)
    request_id = kw.pop("request_id", None)
    return store.create_and_lock(
        [NewInstance(iid, "wf", {"n": 1}, **kw) for iid in iids or ("i1",)],
        owner="w1",
        lease_seconds=LEASE,
        names=names,
        replace_terminal=replace_terminal,
        request_id=request_id,
    )


def test_create_and_lock_creates_the_instances_locked_for_the_caller(store: Store) -> None:
    before = store.notifier.snapshot((INSTANCES, ORCHESTRATIONS))
    items = handed(store, "i1", "i2")
    assert sorted(i.instance.instance_id for i in items) == ["i1", "i2"]
    for item in items:
        assert kinds(item.messages) == ["ExecutionStarted"] and item.messages[0].event.input == {"n": 1}
        assert item.messages[0].message_id > 0  # a queued row: a crash before the turn loses nothing
        assert item.history == () and item.instance.status is not RUNNING
    after = store.notifier.snapshot((INSTANCES, ORCHESTRATIONS))
    assert after[INSTANCES] != before[INSTANCES]
    assert after[ORCHESTRATIONS] == before[ORCHESTRATIONS]  # taken: no other worker is woken
    # Nobody else takes them while the lease holds, and the caller's turn commits.
    assert lock(store, "w2") == []
    first = next(i for i in items if i.instance.instance_id == "i1")
    assert commit(store, first, status=COMPLETED, output=1) is Outcome.OK
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]
    assert store.get_instance("i1").status is COMPLETED  # type: ignore[union-attr]
    assert store.pending_messages("i1") == []


def test_create_and_lock_of_a_crashed_caller_leaves_the_instance_to_others(store: Store, clock: FakeClock) -> None:
    [item] = handed(store)
    clock.advance(LEASE + 1)  # the caller never ran the turn
    retaken = lock_one(store, "i1", "w2")
    assert kinds(retaken.messages) == ["ExecutionStarted"]
    assert commit(store, item) is Outcome.LEASE_LOST
    assert commit(store, retaken) is Outcome.OK


def test_create_and_lock_queues_what_the_caller_cannot_take(store: Store, clock: FakeClock) -> None:
    before = store.notifier.snapshot((ORCHESTRATIONS,))
    assert handed(store, "i1", names={"other"}) == []  # a name the caller does not run
    assert store.notifier.snapshot((ORCHESTRATIONS,)) != before
    assert kinds(lock_one(store, "i1", "w2").messages) == ["ExecutionStarted"]
    assert handed(store, "i2", start_at=clock() + 10) == []  # not due yet
    assert lock(store, "w2") == []
    clock.advance(10)
    assert kinds(lock_one(store, "i2", "w2").messages) == ["ExecutionStarted"]


def test_create_and_lock_applies_a_request_once(store: Store) -> None:
    assert len(handed(store, request_id="r1")) == 1
    assert handed(store, request_id="r1") == []  # a retry after an unknown outcome
    assert kinds(store.get_history("i1")) == [] and lock(store, "w2") == []


def test_create_and_lock_refuses_a_taken_id_and_is_atomic(store: Store) -> None:
    start(store, "i1")
    with pytest.raises(InstanceExistsError, match="'i1'"):
        handed(store, "i2", "i1")
    assert store.get_instance("i2") is None
    first = lock_one(store, "i1")
    assert commit(store, first, status=COMPLETED) is Outcome.OK
    [item] = handed(store, "i1", replace_terminal=True)  # a new run of the id
    assert item.instance.run_id != first.instance.run_id and item.instance.execution_id == 2
    store.fault_hook = FailAt("create_and_lock:inside")
    with pytest.raises(InjectedFault):
        handed(store, "i3")
    store.fault_hook = None
    assert store.get_instance("i3") is None and lock(store, "w2") == []


def test_create_and_lock_leaves_what_was_queued_for_the_id_before_it_existed_after_the_start(store: Store) -> None:
    raise_event(store, "i1", name="early")
    [item] = handed(store)
    # As for any first delivery: the start comes first, then what was queued.
    assert kinds(item.messages)[0] == "ExecutionStarted"
    assert commit(store, item) is Outcome.OK
    rest = [k for k in kinds(store.get_history("i1")) if k != "TurnStarted"]
    assert rest[0] == "ExecutionStarted"
    assert "EventRaised" in rest + kinds(store.pending_messages("i1"))
