"""Conformance: the reads behind the dashboard: ``queue_depths`` (the queues per
orchestration and activity name) and ``list_instances`` sorted by last update."""

from __future__ import annotations

import pytest

from perdure.errors import InvalidInputError
from perdure.store.base import InstanceQuery, Outcome, QueueDepth, Store
from perdure.store.common.rows import encode_cursor
from perdure.testing.conformance.helpers import (
    LEASE,
    commit,
    lock_one,
    raise_event,
    running,
    start,
    task,
)
from perdure.testing.faults import FakeClock


def test_queue_depths_count_rows_per_name_with_due_ones_and_their_age(store: Store, clock: FakeClock) -> None:
    assert store.queue_depths() == []
    start(store, "a1", "alpha")  # its start message is due now
    start(store, "a2", "alpha", start_at=clock() + 60)  # due in a minute
    running(store, "b1", name="beta")
    t0 = clock()
    clock.advance(10)
    raise_event(store, "b1")  # due now, 0 s old
    raise_event(store, "ghost")  # to an instance that does not exist
    item = lock_one(store, "b1")
    tasks = [task("b1", 1, "charge"), task("b1", 2, "charge"), task("b1", 3, "pack", visible_at=clock() + 100)]
    assert commit(store, item, activities=tasks) is Outcome.OK
    clock.advance(5)
    assert store.queue_depths() == [
        QueueDepth("activity", "charge", 2, 2, 5.0),
        QueueDepth("activity", "pack", 1, 0, None),
        QueueDepth("orchestration", None, 1, 1, 5.0),
        QueueDepth("orchestration", "alpha", 2, 1, clock() - t0),
    ]


def test_queue_depths_do_not_count_a_running_task_as_due_until_its_lease_expires(
    store: Store, clock: FakeClock
) -> None:
    item = running(store, "i1")
    raise_event(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task("i1", 1, "act")]) is Outcome.OK
    [locked] = store.lock_activities("w1", lease_seconds=LEASE)
    assert locked.instance_id == item.instance.instance_id
    assert store.queue_depths() == [QueueDepth("activity", "act", 1, 0, None)]
    clock.advance(LEASE + 2)
    assert store.queue_depths() == [QueueDepth("activity", "act", 1, 1, 2.0)]


def test_list_instances_sorted_by_update_pages_most_recently_updated_first(store: Store, clock: FakeClock) -> None:
    for n in range(5):
        start(store, f"job-{n}")
        clock.advance(1)
    start(store, "other")
    for iid in ("job-3", "job-0", "job-4"):  # updated in this order
        clock.advance(1)
        raise_event(store, iid)
        assert commit(store, lock_one(store, iid)) is Outcome.OK
    seen, cursor = [], None
    while True:
        page = store.list_instances(InstanceQuery(instance_id_prefix="job-", sort="updated", limit=2, cursor=cursor))
        seen += [r.instance_id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["job-4", "job-0", "job-3", "job-2", "job-1"]
    newest = store.list_instances(InstanceQuery(sort="created", limit=2)).items
    assert [r.instance_id for r in newest] == ["other", "job-4"]


def test_list_instances_sorted_by_update_pages_the_updates_of_one_second_in_order(
    store: Store, clock: FakeClock
) -> None:
    # Several updates in one second, two at the same instant, and the next second: the
    # pages split the second and keep the order (last update, then id, newest first).
    clock.advance((0.5 - clock() % 1) % 1)  # half a second into a second
    ids = [f"job-{n}" for n in range(7)]
    for iid in ids:
        start(store, iid)
    steps = [0.1, 0.1, 0.0, 0.1, 0.1, 0.3, 0.1]  # job-2 at job-1's instant; job-5 in the next second
    for iid, step in zip(ids, steps, strict=True):
        clock.advance(step)
        raise_event(store, iid)
        assert commit(store, lock_one(store, iid)) is Outcome.OK
    for limit in (1, 2, 3):
        seen, cursor = [], None
        while True:
            page = store.list_instances(
                InstanceQuery(instance_id_prefix="job-", sort="updated", limit=limit, cursor=cursor)
            )
            seen += [r.instance_id for r in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ["job-6", "job-5", "job-4", "job-3", "job-2", "job-1", "job-0"], limit


def test_list_instances_refuses_a_cursor_that_holds_no_time(store: Store) -> None:
    start(store, "job-0")
    for time in (float("inf"), float("nan")):
        with pytest.raises(InvalidInputError, match="invalid list cursor"):
            store.list_instances(InstanceQuery(sort="updated", cursor=encode_cursor(time, "job-0")))
