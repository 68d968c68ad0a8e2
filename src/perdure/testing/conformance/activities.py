"""Conformance: activity tasks: locking, completion, leases, terminal cleanup."""

from __future__ import annotations

import pytest

from perdure.core.history import (
    ActivityCompleted,
    ActivityScheduled,
    DiscardReason,
    EventRaised,
    ExecutionCompleted,
    TurnStarted,
)
from perdure.core.status import OrchestrationStatus
from perdure.errors import LeaseLost
from perdure.store.base import (
    Message,
    Outcome,
    Store,
)
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    commit,
    done,
    lock_one,
    raise_event,
    start,
    task,
)
from perdure.testing.faults import FakeClock

# --- activities --------------------------------------------------------------------------


def test_activity_task_round_trip(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task("i1", 1, "f"), task("i1", 2, "g")]) is Outcome.OK
    assert [t.lease_token for t in store.activity_tasks("i1")] == ["", ""]
    [work] = store.lock_activities("a1", lease_seconds=LEASE, names=["g"])
    assert (work.task_id, work.name, work.input, work.attempt, work.delivery_count) == (
        2,
        "g",
        {"n": 2},
        1,
        1,
    )
    assert (work.instance_id, work.execution_id, work.lease_expires_at) == (
        "i1",
        1,
        clock() + LEASE,
    )
    assert store.lock_activities("a2", lease_seconds=LEASE, names=["g"]) == []
    assert store.complete_activities([done(work, result=[1, 2])]) == [Outcome.OK]
    [msg] = store.pending_messages("i1")
    assert msg.execution_id == 1 and msg.event == ActivityCompleted(timestamp=2.0, task_id=2, result=[1, 2])
    assert [t.task_id for t in store.activity_tasks("i1")] == [1]
    assert store.complete_activities([done(work)]) == [Outcome.LEASE_LOST]  # already completed


def test_activity_visible_at_delays_the_task(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task(visible_at=clock() + 10)]) is Outcome.OK
    assert store.lock_activities("a1", lease_seconds=LEASE) == []
    assert store.next_visible_at() == clock() + 10
    clock.advance(10)
    assert len(store.lock_activities("a1", lease_seconds=LEASE)) == 1


def test_activity_lease_takeover_makes_the_old_completion_lease_lost(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task()]) is Outcome.OK
    [old] = store.lock_activities("a1", lease_seconds=10)
    assert store.lock_activities("a2", lease_seconds=10) == []
    assert store.renew_activity_leases([(old.task_row_id, old.lease_token)], 10) == [True]
    clock.advance(11)
    [new] = store.lock_activities("a2", lease_seconds=10)
    assert new.task_row_id == old.task_row_id and new.lease_token != old.lease_token and new.delivery_count == 2
    assert store.renew_activity_leases(
        [(old.task_row_id, old.lease_token), (new.task_row_id, new.lease_token)], 10
    ) == [
        False,
        True,
    ]
    with pytest.raises(LeaseLost):
        store.abandon_activity(old.task_row_id, old.lease_token)
    assert store.complete_activities([done(old, "stale"), done(new, "fresh")]) == [
        Outcome.LEASE_LOST,
        Outcome.OK,
    ]
    [msg] = store.pending_messages("i1")
    assert isinstance(msg.event, ActivityCompleted) and msg.event.result == "fresh"


def test_abandoned_activity_runs_again_after_retry_after(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task()]) is Outcome.OK
    [work] = store.lock_activities("a1", lease_seconds=LEASE)
    store.abandon_activity(work.task_row_id, work.lease_token, retry_after=3)
    assert store.lock_activities("a1", lease_seconds=LEASE) == []
    clock.advance(3)
    [again] = store.lock_activities("a1", lease_seconds=LEASE)
    assert again.task_row_id == work.task_row_id and again.delivery_count == 2


def test_activity_completion_for_a_terminal_instance_is_discarded(store: Store) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task()]) is Outcome.OK
    [work] = store.lock_activities("a1", lease_seconds=LEASE)
    store.enqueue_messages([Message("i1", EventRaised(timestamp=1.0, name="stop"))])
    assert commit(store, lock_one(store, "i1"), status=OrchestrationStatus.TERMINATED) is Outcome.OK
    assert len(store.activity_tasks("i1")) == 1  # a held task is left to its holder
    assert store.complete_activities([done(work)]) == [Outcome.DISCARDED]
    assert store.activity_tasks("i1") == [] and store.pending_messages("i1") == []
    [record] = store.discarded_messages(instance_id="i1")
    assert record.reason == DiscardReason.TERMINAL_INSTANCE and isinstance(record.event, ActivityCompleted)


def test_terminal_status_removes_queued_tasks_with_records(store: Store) -> None:
    start(store, "i1")
    acts = [task("i1", 1, "f"), task("i1", 2, "g")]
    assert commit(store, lock_one(store, "i1"), activities=acts) is Outcome.OK
    [held] = store.lock_activities("a1", lease_seconds=LEASE, names=["f"])
    raise_event(store, "i1")
    final = [TurnStarted(timestamp=1.0), ExecutionCompleted(timestamp=1.0, result=None)]
    assert commit(store, lock_one(store, "i1"), new_events=final, status=COMPLETED) is Outcome.OK
    assert [t.task_row_id for t in store.activity_tasks("i1")] == [held.task_row_id]
    [record] = store.discarded_messages(instance_id="i1")
    assert record.reason == DiscardReason.TERMINAL_INSTANCE and record.event.name == "g"
    assert isinstance(record.event, ActivityScheduled) and record.event.task_id == 2


def test_duplicate_activity_completions_in_one_batch(store: Store) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task()]) is Outcome.OK
    [work] = store.lock_activities("a1", lease_seconds=LEASE)
    assert store.complete_activities([done(work), done(work)]) == [Outcome.OK, Outcome.LEASE_LOST]
    assert len(store.pending_messages("i1")) == 1
