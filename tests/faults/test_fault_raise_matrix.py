"""Fault injection in process: store writes that fail, or stall, at every write point.

A :class:`~perdure.testing.FaultyStore` raises :class:`~perdure.testing.InjectedFault`
(standing for a lost connection, a full disk, a deadlock...) at one write point: before
the write reaches the store, inside its transaction (rolled back), or after the commit
(written, but the caller is told it failed). The worker must shrug it off: every instance
of the mixed workload ends as in a fault-free run and every invariant holds. Client
writes are all-or-nothing: a failure before the commit stores nothing, one after it
stores everything.
"""

from __future__ import annotations

import threading
import time

import pytest

import perdure
from perdure.testing import Fault, FaultyStore, InjectedFault, WriteCall, write_points
from tests.faults.helpers import finish_and_check, start_workload
from tests.faults.workload import app

WORKER_POINTS = write_points(["run_round"])

slow = perdure.App()
#: ``(instance id, task id)`` of every run of ``nap`` in this process.
naps: list[tuple[str, int]] = []


@slow.activity
def nap(seconds: float) -> float:
    info = perdure.activity_info()
    naps.append((info.instance_id, info.task_id))
    time.sleep(seconds)
    return seconds


@slow.orchestration
async def napping(ctx: perdure.OrchestrationContext, seconds: float) -> list[float]:
    return await ctx.when_all([ctx.call_activity(nap, seconds) for _ in range(2)])


def carries_completions(call: WriteCall) -> bool:
    """A round that records activity outcomes."""
    return bool(call.arg(0, "request").completions)


@pytest.mark.parametrize("point", WORKER_POINTS)
def test_a_worker_write_failing_at_a_point_loses_nothing(store, point):
    """The 2nd and 3rd arrivals at ``point`` raise; the worker logs, backs off, retries;
    work whose lock was lost comes back when its 0.5 s lease expires."""
    faulty = FaultyStore(store, [Fault(point, "raise", nth=2, times=2)])
    ids = start_workload(store)
    client = perdure.Client(store)
    with perdure.Worker(app, faulty, poll_interval=0.02, lease_seconds=0.5):  # type: ignore[arg-type]
        for iid in ids:
            client.wait(iid, timeout=20)
    assert faulty.fired == [point, point]
    finish_and_check(store, ids)


def test_heartbeat_failures_do_not_stop_the_work(store):
    """Every heartbeat after the first fails: the housekeeping thread logs and goes on."""
    faulty = FaultyStore(store, [Fault("heartbeat:before", "raise", nth=2, times=None)])
    ids = start_workload(store)
    client = perdure.Client(store)
    with perdure.Worker(app, faulty, poll_interval=0.02, heartbeat_interval=0.05):  # type: ignore[arg-type]
        for iid in ids:
            client.wait(iid, timeout=20)
    assert faulty.hits["heartbeat:before"] >= 2
    finish_and_check(store, ids)


def test_failed_lease_renewals_never_make_a_worker_run_its_own_activities_again(store, caplog):
    """Every renewal fails (inside its transaction: rolled back), so the 0.3 s leases of
    the running activities run out while they sleep 0.4 s. The worker's rounds pass over
    the tasks it is still running: nobody takes them again, each runs once, and their
    results, written under their first tokens, are accepted; nothing says "lease lost".

    Verified: without ``running_tasks`` in the round's request, the worker took its own
    expired tasks over and ran them again, and refused the first runs' results as "lease
    lost ... another worker took it over" (issue 21)."""
    client = perdure.Client(store)
    iid = client.start(napping, 0.4)  # a fresh id: ``naps`` holds the runs of every test
    faulty = FaultyStore(store, [Fault("renew_activity_leases:inside", "raise", times=None)])
    worker = perdure.Worker(slow, faulty, poll_interval=0.02, lease_seconds=0.3)  # type: ignore[arg-type]
    with worker:
        state = client.wait(iid, timeout=20)
    assert (state.status, state.output) == ("COMPLETED", [0.4, 0.4])
    assert "renew_activity_leases:inside" in faulty.fired
    assert sorted(run for run in naps if run[0] == iid) == [(iid, 1), (iid, 2)]
    assert worker.stats().get("activities") == 2 and "activities_lease_lost" not in worker.stats()
    assert "lease lost" not in caplog.text
    perdure.testing.assert_invariants(store, settled=True)


def test_failing_lease_renewals_do_not_hold_up_the_rounds(store):
    """Every renewal fails. With a 0.12 s lease, renewals fall due every 0.04 s, sooner than
    the worker's shortest error backoff (0.05 s): when a failed renewal stopped the loop
    before its round, every later pass found a renewal due, failed again, and no round ran
    again. Here the other instance still completes while the renewals keep failing."""
    client = perdure.Client(store)
    client.start(napping, 0.3, instance_id="napping")
    faulty = FaultyStore(store, [Fault("renew_activity_leases:before", "raise", times=None)])
    worker = perdure.Worker(slow, faulty, poll_interval=0.02, lease_seconds=0.12)  # type: ignore[arg-type]
    with worker:
        deadline = time.monotonic() + 10
        while "renew_activity_leases:before" not in faulty.fired:
            assert time.monotonic() < deadline, "no renewal was attempted"
            time.sleep(0.01)
        state = client.wait(client.start(napping, 0.0, instance_id="quick"), timeout=10)
    assert (state.status, state.output) == ("COMPLETED", [0.0, 0.0])


def test_a_stuck_round_does_not_stop_the_lease_renewals(store):
    """Worker A's round that records its two results stalls (held on an Event) for two
    leases, as a round stuck in the store's retries does. A renews the leases on a thread of
    its own meanwhile, so worker B, running all along, takes neither task over; released,
    A's round records both results and each activity ran once.

    Verified: with the renewer not started (renewals made only between rounds, as before
    issue 21), B takes both tasks over and runs them again, and A's results are refused."""
    stalled, release = threading.Event(), threading.Event()

    def stall(_point: str) -> None:
        stalled.set()
        assert release.wait(20)

    client = perdure.Client(store)
    iid = client.start(napping, 0.0)
    lease = 1.5
    a_store = FaultyStore(store, [Fault("run_round:before", stall, when=carries_completions)])
    a = perdure.Worker(slow, a_store, poll_interval=0.02, lease_seconds=lease, worker_id="A")  # type: ignore[arg-type]
    b = perdure.Worker(slow, store, poll_interval=0.02, lease_seconds=lease, worker_id="B")
    with a:
        assert stalled.wait(10)
        with b:
            time.sleep(2 * lease)  # A's leases would have run out twice over without renewals
            release.set()
            state = client.wait(iid, timeout=20)
    assert (state.status, state.output) == ("COMPLETED", [0.0, 0.0])
    assert sorted(run for run in naps if run[0] == iid) == [(iid, 1), (iid, 2)]
    assert a.stats().get("activities") == 2 and "activities_lease_lost" not in a.stats()
    assert "activities" not in b.stats()


def test_a_completion_stalled_past_its_lease_is_refused_and_the_rerun_stands(store):
    """Worker A runs both tasks, then its completion write stalls before reaching the
    store (held on an Event) and its lease renewals fail (a store A cannot reach), past the
    0.3 s lease. Worker B, started only then, takes the tasks over, runs them again and
    completes the instance. Released, A's write comes back ``LEASE_LOST``: counted as such,
    and as leases that expired during a store outage; nothing written, one completion per
    task."""
    stalled, finished = threading.Event(), threading.Event()

    def stall(_point: str) -> None:
        stalled.set()
        assert finished.wait(10)

    client = perdure.Client(store)
    iid = client.start(napping, 0.0, instance_id="stalled")
    a_store = FaultyStore(
        store,
        [
            Fault("run_round:before", stall, when=carries_completions),
            Fault("renew_activity_leases:before", "raise", times=None),
        ],
    )
    a = perdure.Worker(slow, a_store, poll_interval=0.02, lease_seconds=0.3, worker_id="A")  # type: ignore[arg-type]
    b = perdure.Worker(slow, store, poll_interval=0.02, lease_seconds=0.3, worker_id="B")
    with a:
        assert stalled.wait(10)
        with b:
            state = client.wait(iid, timeout=20)
        finished.set()
        deadline = time.monotonic() + 5
        while not a.stats().get("activities_lease_lost") and time.monotonic() < deadline:
            time.sleep(0.02)
    assert (state.status, state.output) == ("COMPLETED", [0.0, 0.0])
    assert a.stats().get("activities_lease_lost") == 2 and not a.stats().get("activities")
    assert a.stats().get("activities_lease_expired_in_outage") == 2
    assert b.stats().get("activities") == 2
    perdure.testing.assert_invariants(store, settled=True)


@pytest.mark.parametrize("phase", ["before", "inside", "after"])
def test_client_writes_are_all_or_nothing(store, phase):
    """``start`` and ``raise_event`` failing before/inside the transaction store nothing;
    failing after the commit they stored everything (the caller cannot tell, so a call
    made again, with a request id of its own, meets ``InstanceExistsError`` or is a second
    event; the client's own retries reuse the request id: ``test_idempotent_writes.py``)."""
    start_point = "create_instance:inside" if phase == "inside" else f"create_instances:{phase}"
    faulty = FaultyStore(store, [Fault(start_point), Fault(f"enqueue_messages:{phase}")])
    client = perdure.Client(faulty)  # type: ignore[arg-type]
    with pytest.raises(InjectedFault):
        client.start("mixed", 1, instance_id="c-1")
    record = store.get_instance("c-1")
    if phase == "after":
        assert record is not None and len(store.pending_messages("c-1")) == 1
        with pytest.raises(perdure.InstanceExistsError):
            client.start("mixed", 1, instance_id="c-1")
    else:
        assert record is None and store.pending_messages("c-1") == []
        client.start("mixed", 1, instance_id="c-1")
    with pytest.raises(InjectedFault):
        client.raise_event("c-1", "go", "x")
    events = [m.event for m in store.pending_messages("c-1")][1:]
    assert [e.input for e in events] == (["x"] if phase == "after" else [])


@pytest.mark.parametrize("phase", ["before", "inside", "after"])
def test_a_batch_start_is_all_or_nothing(store, phase):
    """``start_many`` failing before or inside its one transaction creates none of the
    instances; failing after the commit, all of them."""
    point = "create_instance:inside" if phase == "inside" else f"create_instances:{phase}"
    client = perdure.Client(FaultyStore(store, [Fault(point)]))  # type: ignore[arg-type]
    ids = ["b-1", "b-2", "b-3"]
    with pytest.raises(InjectedFault):
        client.start_many("mixed", [1, 2, 3], instance_ids=ids)
    created = [store.get_instance(i) is not None for i in ids]
    assert created == [phase == "after"] * 3
