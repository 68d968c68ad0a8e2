"""seeds/003: a completion written to a run that had been cancelled.

In the other engine a step finished, the run was cancelled, and then the step's result
was persisted anyway: the write was fenced by the lease generation only, not by the run's
status. perdure pins invariants 2 and 5:

- every write under a lease is conditional on the token still holding *and* on the
  instance not being terminal; a completion that finds its instance terminated is
  discarded with a record, and the history gains nothing;
- a worker whose lease was taken over cannot write (``Outcome.LEASE_LOST``), and the new
  holder's work stands;
- the worker tells the two apart in its counters and logs: ``*_lease_lost`` ("another
  worker took it over") versus ``activities_instance_terminal`` ("finished after the
  instance was TERMINATED") / ``activities_execution_ended``.
"""

from __future__ import annotations

import logging
import threading

import pytest

import perdure
from perdure.core.history import ActivityCompleted, DiscardReason
from perdure.testing import FakeClock, Fault, FaultyStore, StepWorker
from tests.races.helpers import events, of_type, until

app = perdure.App()
shipped: list[str] = []


@app.activity
def charge(order: str) -> str:
    return f"charged {order}"


@app.activity
def ship(order: str) -> str:
    shipped.append(order)
    return f"shipped {order}"


@app.orchestration
async def order_flow(ctx: perdure.OrchestrationContext, order: str) -> list[str]:
    return [await ctx.call_activity(charge, order), await ctx.call_activity(ship, order)]


# The same code split between an orchestration worker and an activity worker.
orchestrations_only, activities_only = perdure.App(), perdure.App()
orchestrations_only.orchestration(order_flow)
activities_only.activity(charge)
activities_only.activity(ship)


@app.orchestration
async def charge_and_renew(ctx: perdure.OrchestrationContext, order: str) -> str:
    """Schedules a charge, then continues as new without waiting for it."""
    if order != "second":
        ctx.call_activity(charge, order)
        ctx.continue_as_new("second")
    return await ctx.wait_for_event("never")


def test_terminate_between_an_activity_finishing_and_its_completion_being_written(
    store, client, caplog: pytest.LogCaptureFixture
):
    """Invariants 2 and 5: ``charge`` has finished on an activity worker; the round that
    carries its completion is held just before it reaches the store (a fault hook waiting
    on an Event) while the instance is terminated and the terminate turn commits (on the
    orchestration worker). Released, the completion is discarded with a
    ``terminal_instance`` record: the instance stays TERMINATED, its history gains nothing,
    ``ship`` never runs. The worker counts and logs it as "instance terminal", not as a
    lost lease.

    Verified: without the terminal-status check in the store's ``complete_activities``
    (the seed's bug: fenced by the lease only), the completion is accepted as if it would
    be applied (the worker counts ``activities``, never a discard) and the test fails
    waiting for ``activities_discarded``; only the lock-time sweep then keeps the result
    out of the terminated instance's history.
    """
    shipped.clear()
    inside, release = threading.Event(), threading.Event()

    def hold(_point: str) -> None:
        inside.set()
        assert release.wait(10), "the test never released the completion"

    faulty = FaultyStore(store, [Fault("run_round:before", hold, when=lambda c: bool(c.arg(0, "request").completions))])
    iid = client.start(order_flow, "o-1", instance_id="order-1")
    caplog.set_level(logging.INFO, logger="perdure.worker")
    worker = perdure.Worker(activities_only, faulty, poll_interval=0.05)  # type: ignore[arg-type]
    with perdure.Worker(orchestrations_only, store, poll_interval=0.05), worker:
        assert inside.wait(10)  # charge ran; its completion is not written yet
        try:
            client.terminate(iid, reason="customer cancelled")
            until(lambda: client.get(iid).status == "TERMINATED", what="terminated")
            frozen = client.get(iid, history=True)
        finally:
            release.set()
        until(lambda: worker.stats().get("activities_discarded"), what="completion discarded")
    state = client.get(iid, history=True)
    assert state.status == "TERMINATED" and state.history == frozen.history
    assert not of_type(state.history, ActivityCompleted) and shipped == []
    [record] = store.discarded_messages(instance_id=iid)
    assert record.reason == DiscardReason.TERMINAL_INSTANCE
    assert record.event.result == "charged o-1"
    stats = worker.stats()
    assert stats.get("activities_instance_terminal") == 1
    assert stats.get("activities_lease_lost", 0) == 0 and stats.get("activities", 0) == 0
    text = caplog.text
    assert "finished after the instance was TERMINATED" in text and "lease lost" not in text


def test_a_worker_whose_lease_was_taken_over_cannot_commit_its_turn(clocked_store, clocked_client, clock: FakeClock):
    """Invariant 2: w1 locks the instance, then stalls past its lease; w2 takes the instance over. w1's
    commit comes first but is ``LEASE_LOST`` and writes nothing (renewing raises
    ``LeaseLost``); w2's turn, committed after, stands: one turn in history, one task.

    Verified: without the token comparison in the store's ``commit_turn``, w1's late
    commit is accepted and w2's (the lease holder's) is the one refused; the outcome
    assertions fail.
    """
    w1 = StepWorker(app, clocked_store, "w1", lease_seconds=10)
    w2 = StepWorker(app, clocked_store, "w2", lease_seconds=10)
    iid = clocked_client.start(order_flow, "o-2", instance_id="order-2")
    assert w1.lock_turns() == 1
    stale = w1.held_turns[0]
    clock.advance(11)
    assert w2.lock_turns() == 1
    assert w1.run_turns() == 1
    assert w1.stats() == {"turns_lease_lost": 1, "cached_turns": 1}
    assert clocked_store.get_history(iid) == []
    with pytest.raises(perdure.LeaseLost):
        clocked_store.renew_orchestration_lease(iid, stale.lease_token, 10)
    assert w2.run_turns() == 1
    assert w2.stats()["turns"] == 1
    assert [t.name for t in clocked_store.activity_tasks(iid)] == ["charge"]
    assert clocked_store.get_instance(iid).status == "RUNNING"


def test_an_activity_whose_lease_was_taken_over_cannot_complete(
    clocked_store, clocked_client, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    """Invariants 2 and 7: w1 runs ``charge`` but stalls past its lease before writing the result; w2 takes
    the task over and runs it too (at-least-once). w1's completion, written first, is
    ``LEASE_LOST``; w2's stands; the history holds one completion. The worker logs
    "lease lost" and counts ``activities_lease_lost``, not a discard.

    Verified: without the token comparison in the store's ``complete_activities``, w1's
    stale completion is accepted and w2's refused; the counter assertions fail.
    """
    w1 = StepWorker(app, clocked_store, "w1", lease_seconds=10)
    w2 = StepWorker(app, clocked_store, "w2", lease_seconds=10)
    iid = clocked_client.start(order_flow, "o-3", instance_id="order-3")
    assert w1.turns() == 1
    assert w1.lock_tasks() == 1 and w1.run_task()
    clock.advance(11)
    assert w2.lock_tasks() == 1 and w2.run_task()
    caplog.set_level(logging.INFO, logger="perdure.worker")
    w1.complete()
    w2.complete()
    assert w1.stats().get("activities_lease_lost") == 1 and "activities" not in w1.stats()
    assert w2.stats().get("activities") == 1 and "activities_lease_lost" not in w2.stats()
    assert "lease lost on activity 'charge'" in caplog.text
    assert "activities_lease_expired_in_outage" not in w1.stats() and "store outage" not in caplog.text
    assert "activities_discarded" not in w1.stats()
    assert w2.turns() == 1
    [done] = of_type(events(clocked_store, iid), ActivityCompleted)
    assert done.result == "charged o-3"


def test_a_result_for_an_execution_that_continued_as_new_is_counted_apart(
    clocked_store, clocked_client, clock: FakeClock
):
    """Invariants 3 and 4, the third way a result can be dropped: its execution continued as new while the
    activity ran. The store discards it with a ``stale_execution`` record; the worker
    counts ``activities_execution_ended``, neither a lost lease nor a terminal instance.

    Verified: with every discard counted as "instance terminal" (the dispatcher's previous
    single ``activities_discarded`` line), the counter assertion fails.
    """
    worker = StepWorker(app, clocked_store, "w1")
    iid = clocked_client.start(charge_and_renew, "first", instance_id="renewer")
    assert worker.turns() == 1  # execution 1 schedules charge and continues as new
    assert worker.lock_tasks() == 1 and worker.run_task()
    worker.complete()
    stats = worker.stats()
    assert stats.get("activities_execution_ended") == 1
    assert stats.get("activities_discarded") == 1
    assert "activities_instance_terminal" not in stats and "activities_lease_lost" not in stats
    [record] = clocked_store.discarded_messages(instance_id=iid)
    assert (record.reason, record.execution_id) == (DiscardReason.STALE_EXECUTION, 1)
