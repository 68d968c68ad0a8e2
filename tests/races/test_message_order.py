"""Operator messages keep their place (invariant 5) by one delivery rule (invariant 10):
terminate, suspend, resume and raised events are applied in the order they were enqueued
relative to completions, whichever way the messages reach the turn, and none is lost to a
continue-as-new in the same turn (issue 16, item 2). Forced step by step with
:class:`~perdure.testing.StepWorker` on both stores.
"""

from __future__ import annotations

import pytest

import perdure
from perdure.core.history import ActivityScheduled, ExecutionStarted, ExecutionSuspended
from perdure.testing import FakeClock, StepWorker, drain
from tests.races.helpers import events, of_type

app = perdure.App()


@app.activity
def inc(x: int) -> int:
    return x + 1


@app.orchestration
async def one_step(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(inc, x)


@app.orchestration
async def eternal(ctx: perdure.OrchestrationContext, n: int) -> None:
    """Continues as new after every step: it ends only by a terminate."""
    await ctx.call_activity(inc, n)
    ctx.continue_as_new(n + 1)


@pytest.mark.parametrize("path", ["queued", "round", "handed"])
def test_a_terminate_enqueued_before_a_completion_wins(clocked_store, clocked_client, path: str) -> None:
    """The activity finishes; a terminate is enqueued; then the completion is recorded. The
    turn applies them in that order and the instance ends TERMINATED, on both stores and
    whichever way the completion reaches it: queued first (``queued``), recorded by the
    round that locks the instance (``round``), or handed over to the next turn by the
    worker that holds the instance and ran the activity (``handed``: that turn is refused,
    and the completion is queued behind the terminate).

    Pinned by enqueue order in ``route_messages`` (``perdure.store.common.routing``) and
    by the hand-over's check that nothing is queued before its outcomes: with the old sort
    (messages addressed to the execution before those addressed to "whichever is current")
    the completion came first and the instance ended COMPLETED; without the check, the
    handed-over completion is applied before the terminate.
    """
    worker = StepWorker(app, clocked_store, "w1")
    iid = clocked_client.start(one_step, 1)
    if path == "handed":
        assert worker.round() == 1 and worker.round() == 2  # claims, then runs: keeps the lease, takes the task
        assert worker.run_task()
    else:
        assert worker.turns() == 1 and worker.lock_tasks() == 1 and worker.run_task()
    clocked_client.terminate(iid, "operator first")
    if path == "queued":
        worker.complete()
        assert worker.turns() == 1
    else:  # the round records the completion (or hands it over), and the next runs the turn
        while worker.round():
            pass
    state = clocked_client.get(iid, history=True)
    assert state.status == "TERMINATED"
    assert state.history[-1].__class__.__name__ == "MessageDiscarded"  # the completion, after the end
    if path == "handed":
        assert worker.stats()["handovers_refused"] == 1


def test_a_terminate_in_the_batch_that_continues_as_new_ends_the_instance(
    clocked_store, clocked_client, clock: FakeClock
) -> None:
    """The completion that makes ``eternal`` continue as new and a terminate are delivered
    in one batch. The terminate is carried into the next execution (in its
    ``ExecutionStarted``), which ends TERMINATED before running a step.

    Pinned by ``_discard_after_end`` carrying operator messages: without it the terminate
    was discarded "after completion" and the loop could not be stopped (the drain never
    settles).
    """
    worker = StepWorker(app, clocked_store, "w1")
    iid = clocked_client.start(eternal, 0)
    assert worker.turns() == 1 and worker.lock_tasks() == 1 and worker.run_task()
    worker.complete()
    clocked_client.terminate(iid, "stop the loop")
    assert worker.turns() == 1  # [completion, terminate]: continue as new, terminate carried
    drain(worker, clock, until=[iid], max_rounds=50)
    state = clocked_client.get(iid)
    assert (state.status, state.execution_id) == ("TERMINATED", 2)
    [start] = of_type(events(clocked_store, iid, 2), ExecutionStarted)
    assert [type(m).__name__ for m in start.carried] == ["ExecutionTerminated"]
    assert not of_type(events(clocked_store, iid, 2), ActivityScheduled)


def test_a_suspend_in_the_batch_that_continues_as_new_suspends_the_next_execution(
    clocked_store, clocked_client, clock: FakeClock
) -> None:
    """Likewise a suspend: the next execution starts SUSPENDED and runs no step until it is
    resumed; then it goes on."""
    worker = StepWorker(app, clocked_store, "w1")
    iid = clocked_client.start(eternal, 0)
    assert worker.turns() == 1 and worker.lock_tasks() == 1 and worker.run_task()
    worker.complete()
    clocked_client.suspend(iid, "hold on")
    assert worker.turns() == 1
    assert worker.turns() == 1  # execution 2's first turn
    state = clocked_client.get(iid)
    assert (state.status, state.execution_id) == ("SUSPENDED", 2)
    assert not of_type(events(clocked_store, iid, 2), ActivityScheduled)
    assert of_type(events(clocked_store, iid, 2), ExecutionStarted)[0].carried == (
        ExecutionSuspended(timestamp=clock(), reason="hold on"),
    )
    clocked_client.resume(iid)
    assert worker.turns() == 1
    assert of_type(events(clocked_store, iid, 2), ActivityScheduled)  # it runs again
    clocked_client.terminate(iid)
    drain(worker, clock, until=[iid], max_rounds=50)
    assert clocked_client.get(iid).status == "TERMINATED"
