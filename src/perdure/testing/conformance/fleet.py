"""Conformance: the reads diagnosis depends on: fleet counts, oldest and stalled
instances, and when (and by whom) a running activity task was locked."""

from __future__ import annotations

from perdure.core.status import OrchestrationStatus
from perdure.store.base import InstanceCount, Outcome, Store, TurnStats
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    commit,
    lock_one,
    raise_event,
    running,
    start,
    task,
)
from perdure.testing.faults import FakeClock

RUNNING = OrchestrationStatus.RUNNING
PENDING = OrchestrationStatus.PENDING


def test_instance_counts_group_by_name_and_status(store: Store) -> None:
    assert store.instance_counts() == []
    running(store, "a1", name="alpha")
    running(store, "a2", name="alpha")
    start(store, "a3", "alpha")
    start(store, "b1", "beta")
    assert commit(store, lock_one(store, "b1"), status=COMPLETED) is Outcome.OK
    assert store.instance_counts() == [
        InstanceCount("alpha", PENDING, 1),
        InstanceCount("alpha", RUNNING, 2),
        InstanceCount("beta", COMPLETED, 1),
    ]


def test_oldest_instances_orders_by_creation_and_reads_at_an_offset(store: Store, clock: FakeClock) -> None:
    t0 = clock()
    for n in range(6):
        running(store, f"r{n}", name="wf")
        clock.advance(10)
    start(store, "p0", "wf")  # PENDING: not among RUNNING ones
    oldest = store.oldest_instances(statuses=[RUNNING], limit=3)
    assert [r.instance_id for r in oldest] == ["r0", "r1", "r2"]
    assert oldest[0].created_at == t0 and oldest[0].status == RUNNING
    assert oldest[0].history_event_count == 2 and oldest[0].history_bytes > 0
    assert oldest[0].last_progress_at == t0 and oldest[0].name == "wf"
    [fifth] = store.oldest_instances(statuses=[RUNNING], offset=4, limit=1)
    assert (fifth.instance_id, fifth.created_at) == ("r4", t0 + 40)
    assert store.oldest_instances(statuses=[RUNNING], offset=6) == []
    both = store.oldest_instances(statuses=[RUNNING, PENDING], offset=5, limit=5)
    assert [r.instance_id for r in both] == ["r5", "p0"]


def test_stalled_instances_use_last_progress_or_creation(store: Store, clock: FakeClock) -> None:
    t0 = clock()
    running(store, "moved")  # progressed at t0
    start(store, "never")  # PENDING since t0, never progressed
    start(store, "done")
    assert commit(store, lock_one(store, "done"), status=COMPLETED) is Outcome.OK
    running(store, "stuck")
    clock.advance(100)
    raise_event(store, "stuck")  # a retry-like turn: does not count as progress
    assert commit(store, lock_one(store, "stuck"), stats=TurnStats(progressed=False)) is Outcome.OK
    raise_event(store, "moved")
    assert commit(store, lock_one(store, "moved")) is Outcome.OK  # progress at t0 + 100
    total, rows = store.stalled_instances(progress_before=t0 + 50, limit=10)
    assert total == 2 and sorted(r.instance_id for r in rows) == ["never", "stuck"]
    assert {r.instance_id: r.last_progress_at for r in rows} == {"never": None, "stuck": t0}
    total, rows = store.stalled_instances(progress_before=t0 + 50, limit=1)
    assert total == 2 and len(rows) == 1
    total, rows = store.stalled_instances(progress_before=t0 + 101, limit=10)
    assert total == 3 and [r.instance_id for r in rows][-1] == "moved"
    assert store.stalled_instances(progress_before=t0, limit=10) == (0, [])


def test_activity_tasks_tell_when_and_by_whom_a_task_was_locked(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task(task_id=1), task(task_id=2)]) is Outcome.OK
    queued = store.activity_tasks("i1")
    assert [(t.locked_at, t.lease_owner) for t in queued] == [(None, None), (None, None)]
    assert [t.visible_at for t in queued] == [clock(), clock()]
    clock.advance(5)
    [work] = store.lock_activities("w-7", lease_seconds=LEASE, limit=1)
    assert (work.locked_at, work.lease_owner) == (clock(), "w-7")
    clock.advance(3)
    assert store.renew_activity_leases([(work.task_row_id, work.lease_token)], LEASE) == [True]
    locked = {t.task_id: t for t in store.activity_tasks("i1")}[work.task_id]
    assert (locked.locked_at, locked.lease_owner) == (clock() - 3, "w-7")  # renewal keeps it
    assert locked.visible_at == clock() + LEASE
    store.abandon_activity(work.task_row_id, work.lease_token)
    released = {t.task_id: t for t in store.activity_tasks("i1")}[work.task_id]
    assert (released.locked_at, released.lease_owner, released.lease_token) == (None, None, "")
    clock.advance(LEASE + 1)
    [again] = store.lock_activities("w-8", lease_seconds=LEASE, task_row_ids=[work.task_row_id])
    assert again.locked_at == clock()
    clock.advance(LEASE + 1)  # expired: a takeover restarts the clock
    [taken] = store.lock_activities("w-9", lease_seconds=LEASE, task_row_ids=[work.task_row_id])
    row = {t.task_id: t for t in store.activity_tasks("i1")}[work.task_id]
    assert (row.locked_at, row.lease_owner) == (clock(), "w-9") == (taken.locked_at, "w-9")
