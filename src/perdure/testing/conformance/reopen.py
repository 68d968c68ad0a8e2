"""Conformance: ``Store.rewind`` and ``Store.reset`` (a failed execution made live again; a
terminal run replaced by a new one with a copied history), their checks, and what becomes of
the work and the children they hand over."""

from __future__ import annotations

import pytest

from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityScheduled,
    DiscardReason,
    EventRaised,
    ExecutionFailed,
    ExecutionRewound,
    ExecutionStarted,
    ParentRef,
    SubOrchestrationCompleted,
    TurnStarted,
)
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceStateError
from perdure.store.base import LiveWork, Message, OpenChild, Outcome, Reset, Rewind, Store
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    commit,
    done,
    kinds,
    lock,
    lock_one,
    raise_event,
    running,
    start,
    task,
)

FAILED = OrchestrationStatus.FAILED
BOOM = Failure("ValueError", "boom")


def _failed(store: Store, iid: str = "i1") -> None:
    """``iid`` ran one turn, then one that failed."""
    running(store, iid)
    _failed_turn(store, iid)


def _failed_turn(store: Store, iid: str = "i1") -> None:
    raise_event(store, iid, "x")
    item = lock_one(store, iid)
    events = [TurnStarted(timestamp=2.0), *(m.event for m in item.messages), ExecutionFailed(failure=BOOM)]
    assert commit(store, item, new_events=events, status=FAILED, failure=BOOM) is Outcome.OK


def _completed(store: Store, iid: str) -> str:
    """``iid`` ran one turn, then one that completed it; its run token."""
    running(store, iid)
    raise_event(store, iid, "x")
    item = lock_one(store, iid)
    assert commit(store, item, status=COMPLETED) is Outcome.OK
    return item.instance.run_id


def _rewind(store: Store, iid: str = "i1", **work: object) -> Rewind:
    record = store.get_instance(iid)
    assert record is not None
    undone = max(i for i, r in enumerate(store.get_history(iid)) if isinstance(r.event, TurnStarted))
    live = LiveWork(OrchestrationStatus.RUNNING, **work)  # type: ignore[arg-type]
    return Rewind(
        iid, record.run_id, record.execution_id, record.history_event_count, ExecutionRewound(undone_from=undone), live
    )


def test_a_rewind_appends_its_record_and_queues_the_work_of_the_live_execution(store: Store) -> None:
    _failed(store)
    raise_event(store, "i1", "while failed")  # queued for a FAILED instance: not for the live one
    rewind = _rewind(
        store,
        messages=[Message("i1", EventRaised(name="again"), execution_id=1, run_id=store.get_instance("i1").run_id)],
        activities=[task("i1", 1, run_id=store.get_instance("i1").run_id)],
    )
    store.rewind([rewind])
    record = store.get_instance("i1")
    assert (record.status, record.failure, record.output) == (OrchestrationStatus.RUNNING, None, None)
    history = store.get_history("i1")
    assert isinstance(history[-1].event, ExecutionRewound) and record.history_event_count == len(history)
    assert [m.event.name for m in store.pending_messages("i1")] == ["again"]
    [discard] = store.discarded_messages(instance_id="i1")
    assert (discard.event.name, discard.reason) == ("while failed", DiscardReason.TERMINAL_INSTANCE)
    assert [t.task_id for t in store.activity_tasks("i1")] == [1]
    [item] = lock(store)
    assert item.history_from == 0 and isinstance(item.history[-1], ExecutionRewound)


def test_a_rewind_refuses_an_instance_that_changed_and_writes_nothing(store: Store) -> None:
    _failed(store)
    stale = _rewind(store)
    store.rewind([_rewind(store)])
    before = store.get_history("i1")
    with pytest.raises(InstanceStateError, match="it is RUNNING, not FAILED"):
        store.rewind([stale])
    running(store, "i2")
    _failed(store, "i3")
    with pytest.raises(InstanceStateError, match="cannot rewind instance 'i2'"):
        store.rewind([_rewind(store, "i3"), _rewind(store, "i2")])  # all or nothing
    assert store.get_history("i1") == before and store.get_instance("i3").status is FAILED


def test_a_rewind_refuses_the_outcome_of_a_task_that_was_running(store: Store) -> None:
    start(store)
    item = lock_one(store, "i1")
    assert commit(store, item, activities=[task("i1", 1, run_id=item.instance.run_id)]) is Outcome.OK
    [work] = store.lock_activities("w1", lease_seconds=LEASE)
    _failed_turn(store)
    store.rewind([_rewind(store, activities=[task("i1", 1, run_id=store.get_instance("i1").run_id)])])
    assert store.complete_activities([done(work)]) == [Outcome.LEASE_LOST]
    [again] = store.activity_tasks("i1")
    assert again.task_id == 1 and again.task_row_id != work.task_row_id


def _reset(store: Store, iid: str, **work: object) -> Reset:
    record = store.get_instance(iid)
    assert record is not None
    execution = record.execution_id + 1
    history = [
        TurnStarted(timestamp=1.0),
        ExecutionStarted(name=record.name, execution_id=execution, run_id="run-2"),
        ActivityScheduled(task_id=1, name="act"),
    ]
    live = LiveWork(OrchestrationStatus.RUNNING, **work)  # type: ignore[arg-type]
    return Reset(iid, record.run_id, "run-2", execution, record.name, None, history, live, 1, None)


def test_a_reset_replaces_a_terminal_run_with_its_copied_history(store: Store) -> None:
    _completed(store, "i1")
    old = store.get_instance("i1")
    store.reset(_reset(store, "i1", activities=[task("i1", 1, execution_id=2, run_id="run-2")]))
    new = store.get_instance("i1")
    assert (new.run_id, new.execution_id, new.status, new.history_event_count) == ("run-2", 2, "RUNNING", 3)
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted", "ActivityScheduled"]
    assert kinds(store.get_history("i1", execution_id=1))[-1] != "ActivityScheduled"  # the old run's, readable
    assert [(t.task_id, t.run_id) for t in store.activity_tasks("i1")] == [(1, "run-2")]
    with pytest.raises(InstanceStateError, match="no longer the instance's"):
        store.reset(Reset("i1", old.run_id, "run-3", 2, "wf", None, [], LiveWork(OrchestrationStatus.RUNNING)))


def test_a_reset_refuses_a_live_run(store: Store) -> None:
    running(store)
    with pytest.raises(InstanceStateError, match="in place: it is RUNNING; terminate it first"):
        store.reset(_reset(store, "i1"))
    assert store.get_instance("i1").status == "RUNNING"


def test_open_children_are_kept_reported_or_started_again(store: Store) -> None:
    """A child still the task's and running reports to the new run; one that completed has
    its result queued to it; one held by another instance's run is not touched (the start
    is refused and the task told)."""
    old_run = _completed(store, "p")
    recorded = {n: ParentRef("p", 1, n, old_run) for n in (1, 2, 3)}
    start(store, "kid-running", parent=recorded[1])
    start(store, "kid-done", parent=recorded[2])
    assert commit(store, lock_one(store, "kid-done"), status=COMPLETED, output="result") is Outcome.OK
    start(store, "not-a-kid")
    children = [
        OpenChild(iid, "wf", None, recorded=recorded[n], parent=ParentRef("p", 2, n, "run-2"))
        for n, iid in ((1, "kid-running"), (2, "kid-done"), (3, "not-a-kid"))
    ]
    store.reset(_reset(store, "p", children=children))
    assert store.get_instance("kid-running").parent == ParentRef("p", 2, 1, "run-2")
    queued = {type(m.event).__name__: m for m in store.pending_messages("p")}
    done = queued["SubOrchestrationCompleted"]
    assert isinstance(done.event, SubOrchestrationCompleted) and done.event.result == "result"
    assert (done.event.task_id, done.run_id, done.execution_id) == (2, "run-2", 2)
    assert queued["SubOrchestrationFailed"].event.task_id == 3  # the id is another's: refused
    assert store.get_instance("not-a-kid").parent is None
