"""Issue 21: an activity whose lease expires while the store does not answer.

A worker's lease renewals could not reach the store for longer than the lease (a
PostgreSQL outage); its round, retried once the store answered, took the worker's own
expired tasks and ran them a second time, and the first runs' results were refused as
"lease lost ... another worker took it over", though no other worker existed. perdure pins:

- a round never locks a task its worker is still running (the worker names them:
  ``RoundRequest.running_tasks``), so the running attempt's result is accepted;
- when another worker did take the task over meanwhile, the log and the counters say that
  the lease expired during a store outage, not that it was simply taken over.

The interleavings are forced on the test's thread: the activity itself runs the step the
test needs while it runs (a round, a failed renewal, another worker's round), and the
lease expires by the store's fake clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

import perdure
from perdure.testing import FakeClock, Fault, FaultyStore, InjectedFault, StepWorker, drain

app = perdure.App()
runs: list[str] = []  # the input of every run of ``charge``
during: list[Callable[[], None]] = []  # what ``charge`` does while it runs (set by each test)

LEASE = 10.0


@app.activity
def charge(order: str) -> str:
    runs.append(order)
    for step in during:
        step()
    return f"charged {order}"


@app.orchestration
async def pay(ctx: perdure.OrchestrationContext, order: str) -> str:
    return await ctx.call_activity(charge, order)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    runs.clear()
    during.clear()
    yield
    during.clear()


def running_task(worker: StepWorker, client: perdure.Client, order: str) -> str:
    """Start ``pay(order)`` and let ``worker`` take its activity task (held, not run yet)."""
    iid = client.start(pay, order, instance_id=order)
    assert worker.round() == 1  # locks the instance
    assert worker.round() == 2  # runs its turn, and locks the task the turn scheduled
    assert len(worker.held_tasks) == 1
    return iid


def test_a_round_never_takes_a_task_its_worker_is_still_running(
    clocked_store, clocked_client, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    """While ``charge`` runs, its lease expires by the store's clock (no renewal reached
    the store) and the worker runs a round: the round passes over the task. The run's
    result is then accepted; ``charge`` ran once; nothing says "lease lost".

    Verified: without ``running_tasks`` in the round's request (``runtime/rounds.py``),
    the round takes the task again (a second run, ``delivery_count`` 2) and the first
    run's result is refused as "lease lost ... another worker took it over"."""
    worker = StepWorker(app, clocked_store, "w1", lease_seconds=LEASE)
    iid = running_task(worker, clocked_client, "order-1")
    taken: list[int] = []
    seen = []

    def expire_and_run_a_round() -> None:
        clock.advance(LEASE + 1)
        taken.append(worker.round())
        seen.extend(clocked_store.activity_tasks(iid))

    during.append(expire_and_run_a_round)
    caplog.set_level(logging.INFO, logger="perdure.worker")
    assert worker.run_task()
    assert taken == [0] and worker.held_tasks == []
    [task] = seen
    assert task.delivery_count == 1
    drain(worker, clock, until=[iid])
    state = clocked_client.get(iid)
    assert (state.status, state.output) == ("COMPLETED", "charged order-1")
    assert runs == ["order-1"]
    assert worker.stats().get("activities") == 1 and "activities_lease_lost" not in worker.stats()
    assert "lease lost" not in caplog.text


def test_a_lease_that_expired_while_the_store_did_not_answer_is_reported_as_such(
    clocked_store, clocked_client, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    """While ``charge`` runs on w1, w1's renewal fails (the store does not answer), the
    lease expires, and w2 takes the task over. w1's next renewal reaches the store and
    finds the lease gone; its result is refused. Both are logged as a lease that expired
    during a store outage, with the activity and task, and counted as such; w2's run
    stands.

    Verified: with the outage not tracked (``_expired_in_outage`` returning False), the log
    says "lease lost ... another worker took it over" and the outage counter stays 0."""
    faulty = FaultyStore(clocked_store, [Fault("renew_activity_leases:before", "raise", times=1)])
    w1 = StepWorker(app, faulty, "w1", lease_seconds=LEASE)  # type: ignore[arg-type]
    w2 = StepWorker(app, clocked_store, "w2", lease_seconds=LEASE)
    iid = running_task(w1, clocked_client, "order-2")
    renewals: list[str] = []

    def outage_then_takeover() -> None:
        during.clear()  # w2's run of charge does nothing of this
        try:
            w1.worker.activities.renew_leases()
        except InjectedFault:
            renewals.append("failed")
        clock.advance(LEASE + 1)
        assert w2.round() == 1  # the task, taken over
        w1.worker.activities.renew_leases()  # the store answers again: the lease is gone
        renewals.append("answered")

    during.append(outage_then_takeover)
    caplog.set_level(logging.INFO, logger="perdure.worker")
    assert w1.run_task()
    assert renewals == ["failed", "answered"]
    w1.complete()
    stats = w1.stats()
    assert stats.get("activity_leases_lost") == 1
    assert stats.get("activities_lease_lost") == 1 and stats.get("activities_lease_expired_in_outage") == 1
    assert "activities" not in stats
    [task] = clocked_store.activity_tasks(iid)
    assert f"lease expired during a store outage on activity 'charge' (task row {task.task_row_id})" in caplog.text
    assert f"lease on activity 'charge' (task row {task.task_row_id}) expired during a store outage" in caplog.text
    assert "another worker took it over" not in caplog.text
    drain([w1, w2], clock, until=[iid])
    assert clocked_client.get(iid).output == "charged order-2"
    assert runs == ["order-2", "order-2"] and w2.stats().get("activities") == 1
