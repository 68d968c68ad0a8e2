"""Rewind and reset against turns in flight: each applies in one transaction, and a child's
turn that was running meanwhile still reaches the run that awaits it now.

Forced step by step with :class:`~perdure.testing.StepWorker` on both stores. Each test
names the guard it pins.
"""

from __future__ import annotations

import pytest

import perdure
from perdure import run_operations
from perdure.testing import FakeClock, StepWorker, drain

app = perdure.App()
BROKEN: set[str] = set()


@app.activity
def side(name: str) -> str:
    if name in BROKEN:
        raise RuntimeError(f"{name} is broken")
    return f"{name} done"


@app.orchestration
async def waiting_child(ctx: perdure.OrchestrationContext, _: None) -> str:
    return await ctx.wait_for_event("release")


@app.orchestration
async def parent(ctx: perdure.OrchestrationContext, _: None) -> list:
    child = ctx.call_sub_orchestration(waiting_child, None, instance_id="kid")
    return await ctx.when_all([child, ctx.call_activity(side, "side")])


def _failed_parent(worker: StepWorker, client: perdure.Client) -> None:
    """``P`` fails on its activity while its child ``kid`` still waits for its event."""
    BROKEN.add("side")
    client.start(parent, None, instance_id="P")
    assert worker.turns_of("P") == 1
    assert worker.turns_of("kid") == 1
    assert worker.activities() == 1
    assert worker.turns_of("P") == 1
    assert client.get("P").status == "FAILED" and client.get("kid").status == "RUNNING"
    BROKEN.clear()


def test_a_child_turn_in_flight_during_a_reset_reports_to_the_new_run(
    clocked_store, clocked_client, clock: FakeClock
) -> None:
    """``kid``'s turn is locked (its event came) before ``P`` is reset and commits after: it
    reports to the run the reset made, which completes.

    Pinned by the store addressing a child's outcome from its row at commit
    (:func:`perdure.store.common.routing.parent_report`): addressed from the turn's own
    knowledge (its history, or the row as it was locked), it goes to the old run, is
    discarded as ``stale_run``, and the new run waits forever."""
    worker = StepWorker(app, clocked_store, "w1")
    _failed_parent(worker, clocked_client)
    clocked_client.raise_event("kid", "release", "freed")
    assert worker.lock_turns() == 1  # kid's turn, in flight
    new_run = clocked_client.reset("P", 1)
    assert worker.run_turns() == 1
    assert clocked_client.get("kid").status == "COMPLETED"
    drain(worker, clock, until=["P"])
    state = clocked_client.get("P")
    assert (state.run_id, state.status, state.output) == (new_run, "COMPLETED", ["freed", "side done"])


def test_a_rewind_planned_before_the_instance_changed_writes_nothing(clocked_store, clocked_client) -> None:
    """A rewind applies to the history it was planned from: if the instance changed in
    between (here: another rewind got there first, and the instance failed again), it is
    refused and nothing is written.

    Pinned by the store's check of run, execution and history length
    (:func:`perdure.store.common.reopen.check_rewindable`)."""
    worker = StepWorker(app, clocked_store, "w1")
    _failed_parent(worker, clocked_client)
    record = clocked_store.get_instance("P")
    history = clocked_client.history("P")
    stale = run_operations.rewinds(clocked_store, record, history, reason=None, now=1.0)
    BROKEN.add("side")
    clocked_client.rewind("P")
    assert worker.activities() == 1 and worker.turns_of("P") == 1  # failed again
    before = clocked_client.history("P")
    with pytest.raises(perdure.InstanceStateError, match="changed while the rewind was planned"):
        clocked_store.rewind(stale)
    assert clocked_client.history("P") == before and clocked_client.get("P").status == "FAILED"
