"""Conformance: purge, listing and paging, history, queue statistics, workers, notifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from perdure.core.history import EventRaised
from perdure.core.status import OrchestrationStatus
from perdure.store.base import (
    InstanceQuery,
    Message,
    Outcome,
    Store,
    WorkerRecord,
)
from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    commit,
    done,
    lock_one,
    raise_event,
    running,
    start,
    task,
    turn,
)
from perdure.testing.faults import FailAt, FakeClock, InjectedFault

# --- purge -------------------------------------------------------------------------------


def test_purge_removes_terminal_instances_only_and_all_their_rows(store: Store) -> None:
    running(store, "live")
    start(store, "gone")
    assert commit(store, lock_one(store, "gone"), activities=[task("gone")]) is Outcome.OK
    store.lock_activities("a1", lease_seconds=LEASE)
    raise_event(store, "gone")
    assert commit(store, lock_one(store, "gone"), status=COMPLETED, release=False) is Outcome.OK
    raise_event(store, "gone", execution_id=9)
    assert store.purge_instances(["live", "gone", "missing"]) == 1
    assert store.get_instance("gone") is None and store.get_instance("live") is not None
    assert store.get_history("gone", execution_id=1) == [] and store.pending_messages("gone") == []
    assert store.activity_tasks("gone") == [] and store.discarded_messages(instance_id="gone") == []
    start(store, "gone")  # the id and its lease are free again
    assert lock_one(store, "gone").instance.status == OrchestrationStatus.PENDING
    assert store.purge_instances(["gone"]) == 0


def test_purge_where_matches_terminal_instances_by_filter(store: Store) -> None:
    for iid, name in [("a1", "a"), ("a2", "a"), ("b1", "b")]:
        start(store, iid, name)
        assert commit(store, lock_one(store, iid), status=COMPLETED) is Outcome.OK
    running(store, "a3", name="a")
    assert store.purge_where(InstanceQuery(name="a", limit=1)) == 2
    left = sorted(r.instance_id for r in store.list_instances(InstanceQuery()).items)
    assert left == ["a3", "b1"]


# --- reads -------------------------------------------------------------------------------


def test_list_instances_filters_and_pages_with_a_stable_cursor(store: Store, clock: FakeClock) -> None:
    t0 = clock()
    for n in range(7):
        start(store, f"job-{n}", "a" if n % 2 == 0 else "b")
        if n != 3:
            clock.advance(1)  # job-3 and job-4 share a creation time: the id breaks the tie
    start(store, "other", "a")
    page = store.list_instances(InstanceQuery(instance_id_prefix="job-", limit=3))
    assert [r.instance_id for r in page.items] == ["job-6", "job-5", "job-4"] and page.next_cursor
    clock.advance(1)
    start(store, "job-new", "a")  # newer rows do not shift later pages
    seen = [r.instance_id for r in page.items]
    cursor = page.next_cursor
    while cursor:
        page = store.list_instances(InstanceQuery(instance_id_prefix="job-", limit=3, cursor=cursor))
        seen += [r.instance_id for r in page.items]
        cursor = page.next_cursor
    assert seen == ["job-6", "job-5", "job-4", "job-3", "job-2", "job-1", "job-0"]
    names = store.list_instances(InstanceQuery(name="b", limit=10)).items
    assert [r.instance_id for r in names] == ["job-5", "job-3", "job-1"]
    window = store.list_instances(InstanceQuery(created_after=t0 + 1, created_before=t0 + 3, limit=10)).items
    assert [r.instance_id for r in window] == ["job-2", "job-1"]
    assert store.list_instances(InstanceQuery(statuses=[COMPLETED])).items == []
    pending = store.list_instances(InstanceQuery(statuses=[OrchestrationStatus.PENDING], limit=100)).items
    assert len(pending) == 9


def test_get_history_pages_through_an_execution(store: Store) -> None:
    running(store, "i1")
    for n in range(3):
        raise_event(store, "i1", f"e{n}")
        assert commit(store, lock_one(store, "i1")) is Outcome.OK
    full = store.get_history("i1")
    assert [r.sequence for r in full] == list(range(8)) and {r.execution_id for r in full} == {1}
    page1 = store.get_history("i1", limit=3)
    page2 = store.get_history("i1", after_sequence=page1[-1].sequence, limit=3)
    page3 = store.get_history("i1", after_sequence=page2[-1].sequence, limit=3)
    assert page1 + page2 + page3 == full and len(page3) == 2
    assert store.get_history("i1", execution_id=2) == [] and store.get_history("nope") == []
    rec = store.get_instance("i1")
    assert rec is not None and rec.history_event_count == 8


def test_queue_stats_count_depth_visibility_and_age(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task(task_id=1), task(task_id=2)]) is Outcome.OK
    store.lock_activities("a1", lease_seconds=LEASE, limit=1)
    raise_event(store, "i1", visible_at=clock() + 100)
    raise_event(store, "i1")
    clock.advance(4)
    stats = store.queue_stats()
    assert (stats.orchestration_depth, stats.orchestration_visible) == (2, 1)
    assert stats.oldest_orchestration_age == 4
    assert (stats.activity_depth, stats.activity_visible, stats.activity_locked) == (2, 1, 1)
    assert stats.oldest_activity_age == 4 and stats.dead_letters == 0


def test_next_visible_at_per_queue(store: Store, clock: FakeClock) -> None:
    running(store, "i1")
    store.enqueue_messages([Message("i1", EventRaised(name="later"), visible_at=clock() + 50)])
    assert store.next_visible_at(queue="orchestrations") == clock() + 50
    assert store.next_visible_at(queue="activities") is None
    assert store.next_visible_at() == clock() + 50
    with pytest.raises(ValueError, match="queue must be"):
        store.next_visible_at(queue="timers")


def test_next_visible_at_accounts_for_leases(store: Store, clock: FakeClock) -> None:
    assert store.next_visible_at() is None
    start(store, "i1")
    assert store.next_visible_at() == clock()
    item = lock_one(store, "i1", lease_seconds=20)
    raise_event(store, "i1")  # due, but the instance is leased until then
    assert store.next_visible_at() == item.lease_expires_at
    assert commit(store, item) is Outcome.OK
    assert store.next_visible_at() == clock()


def test_worker_heartbeats(store: Store, clock: FakeClock) -> None:
    def worker(wid: str) -> WorkerRecord:
        return WorkerRecord(wid, "host", 42, ("wf",), ("act",), clock(), clock(), {"activities": 4})

    store.heartbeat(worker("w1"))
    clock.advance(10)
    store.heartbeat(worker("w2"))
    assert [w.worker_id for w in store.list_workers()] == ["w1", "w2"]
    assert [w.worker_id for w in store.list_workers(alive_within=5)] == ["w2"]
    store.heartbeat(worker("w1"))
    [w1, _] = store.list_workers(alive_within=5)
    assert (w1.host, w1.pid, w1.orchestrations, w1.activities) == ("host", 42, ("wf",), ("act",))
    assert w1.heartbeat_at == clock() and w1.concurrency == {"activities": 4}
    store.remove_worker("w1")
    assert [w.worker_id for w in store.list_workers()] == ["w2"]


def test_commits_wake_the_notifier_topics(store: Store) -> None:
    topics = (ORCHESTRATIONS, ACTIVITIES, INSTANCES)

    def moved(action: Callable[[], Any]) -> set[str]:
        before = store.notifier.snapshot(topics)
        action()
        after = store.notifier.snapshot(topics)
        return {t for t in topics if after[t] != before[t]}

    # INSTANCES is for Client.wait: it moves when an instance ends (or is reopened or
    # purged), not when one is created nor at every new status. Client.wait relies on it:
    # unmoved since a start, the instance started is still running.
    assert moved(lambda: start(store, "i1")) == {ORCHESTRATIONS}
    item = lock_one(store, "i1")
    assert moved(lambda: commit(store, item, activities=[task()])) == {ACTIVITIES}
    [work] = store.lock_activities("a1", lease_seconds=LEASE)
    assert ORCHESTRATIONS in moved(lambda: store.complete_activities([done(work)]))
    assert ORCHESTRATIONS in moved(lambda: raise_event(store, "i1"))
    assert moved(lambda: store.get_instance("i1")) == set()
    assert INSTANCES in moved(lambda: commit(store, lock_one(store, "i1"), status=COMPLETED))


def test_an_end_hands_its_row_to_the_waiters_that_expect_it(store: Store) -> None:
    """The commit that ends an instance hands its row, as written, to ``Client.wait`` when
    this process expects the instance (started by a client of it, or waited for): the
    waiter then reads nothing. A rolled-back end hands nothing over."""
    ended = store.notifier.ended
    for iid in ("started", "waited", "other"):
        running(store, iid)
        raise_event(store, iid)  # a message for its next turn to take
    ended.expect("started")
    items = [lock_one(store, iid) for iid in ("started", "waited", "other")]
    with ended.waiting("waited") as handed:
        store.fault_hook = FailAt("commit_turns:inside")
        with pytest.raises(InjectedFault):
            commit(store, items[1], status=COMPLETED, output=1)
        store.fault_hook = None
        assert handed() is None
        assert store.commit_turns([turn(i, status=COMPLETED, output=2) for i in items]) == [Outcome.OK] * 3
        row = handed()
        assert row is not None and row == store.get_instance("waited")
        assert (row.status, row.output) == (COMPLETED, 2)
    with ended.waiting("started") as handed:  # came after the end: nothing changed since
        assert handed() == store.get_instance("started")
    with ended.waiting("other") as handed:  # not expected: its waiter reads it
        assert handed() is None


def test_a_row_handed_over_is_not_taken_once_an_instance_changed_since(store: Store) -> None:
    """A row handed over before its waiter came is the instance's only if no instance
    ended, was reopened or was purged since, nor had its run replaced: otherwise the
    waiter reads."""
    ended = store.notifier.ended
    for iid in ("i1", "i2", "i3"):
        running(store, iid)
        raise_event(store, iid)
        ended.expect(iid)
    assert commit(store, lock_one(store, "i1"), status=COMPLETED) is Outcome.OK
    with ended.waiting("i1") as handed:
        assert handed() is not None
    assert commit(store, lock_one(store, "i2"), status=COMPLETED) is Outcome.OK
    start(store, "i2", replace_terminal=True)  # a new run of the id
    with ended.waiting("i2") as handed:
        assert handed() is None
    assert commit(store, lock_one(store, "i3"), status=COMPLETED) is Outcome.OK
    running(store, "i4")
    raise_event(store, "i4")
    assert commit(store, lock_one(store, "i4"), status=COMPLETED) is Outcome.OK  # since i3 ended
    with ended.waiting("i3") as handed:
        assert handed() is None


def test_watch_instance_reads_the_instance_as_get_instance_does(store: Store) -> None:
    """A wait that relies on other processes' signals reads its instance with
    ``watch_instance`` (which may also mark it watched): the same row as ``get_instance``,
    running or ended, and None for an unknown id."""
    running(store, "i1")
    assert store.watch_instance("i1") == store.get_instance("i1")
    assert store.watch_instance("i1").status is OrchestrationStatus.RUNNING  # type: ignore[union-attr]
    start(store, "i2")
    assert commit(store, lock_one(store, "i2"), status=COMPLETED) is Outcome.OK
    assert store.watch_instance("i2") == store.get_instance("i2")
    assert store.watch_instance("i2").status is OrchestrationStatus.COMPLETED  # type: ignore[union-attr]
    assert store.watch_instance("nobody") is None
