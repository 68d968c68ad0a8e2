"""seeds/001: sub-orchestration instance-id collisions that left parents waiting forever.

In the other engine a child's id was ``{parent}::sub::{event_id}``: an unrelated terminal
instance holding that id swallowed the child's start silently, and a parent calling a
child inside a continue-as-new loop regenerated the same id every execution and collided
with its own previous child. perdure pins invariant 4 (execution routing):

- generated child ids are unique across executions and runs
  (``{parent}::sub::{run}.{execution}.{task}``), and a child reports to the run and
  execution that scheduled it;
- user ids with the reserved marker are rejected;
- a child start that finds its id held by another parent's instance fails the parent at
  once with ``SubOrchestrationError``, while a redelivered start of the same child changes
  nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import perdure
from perdure.core.history import (
    DiscardReason,
    MessageDiscarded,
    ParentRef,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
)
from perdure.core.ids import child_instance_id
from perdure.store.base import ChildStart, NewInstance, TurnCommit
from perdure.testing import FakeClock, StepWorker, drain
from tests.races.helpers import events, of_type

app = perdure.App()


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.orchestration
async def doubler(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, x)


@app.orchestration
async def looping_parent(ctx: perdure.OrchestrationContext, state: dict) -> list[int]:
    """Calls a child (generated id) in every execution of a continue-as-new loop."""
    got = [*state["got"], await ctx.call_sub_orchestration(doubler, state["n"])]
    if state["n"] < 3:
        ctx.continue_as_new({"n": state["n"] + 1, "got": got})
    return got


@app.orchestration
async def catching_parent(ctx: perdure.OrchestrationContext, child_id: str) -> Any:
    """Calls a child with an explicit id and reports a failure to start it."""
    try:
        return await ctx.call_sub_orchestration(doubler, 5, instance_id=child_id)
    except perdure.SubOrchestrationError as err:
        return {"error_type": err.error_type, "error": err.error_message}


@app.orchestration
async def plain_parent(ctx: perdure.OrchestrationContext, _: None) -> int:
    """Calls a child with a generated id and does not catch."""
    return await ctx.call_sub_orchestration(doubler, 1)


@app.orchestration
async def child_then_event(ctx: perdure.OrchestrationContext, _: None) -> list:
    result = await ctx.call_sub_orchestration(doubler, 4, instance_id="redelivered-child")
    return [result, await ctx.wait_for_event("finish")]


@app.orchestration
async def waits_for_go(ctx: perdure.OrchestrationContext, tag: str) -> str:
    await ctx.wait_for_event("go")
    return tag


@app.orchestration
async def leaves_child_behind(ctx: perdure.OrchestrationContext, state: dict) -> str:
    """Execution 1 starts a child without awaiting it and continues as new; execution 2
    awaits a child of its own, scheduled as the same task id."""
    if state["round"] == 1:
        ctx.call_sub_orchestration(waits_for_go, "from execution 1")
        ctx.continue_as_new({"round": 2})
    return await ctx.call_sub_orchestration(waits_for_go, "from execution 2")


@pytest.fixture
def worker(clocked_store) -> StepWorker:
    """One worker driven step by step."""
    return StepWorker(app, clocked_store, "w1")


def test_a_child_called_in_a_continue_as_new_loop_gets_a_new_id_every_execution(
    clocked_store, clocked_client, worker, clock: FakeClock
):
    """Invariant 4: generated child ids differ per execution, so the loop never collides with its own
    previous (now terminal) child, and the parent completes.

    Verified: with ``child_instance_id`` ignoring the execution, execution 2's child start
    finds the id held by the child of execution 1 and the parent ends FAILED ("already used
    by another instance") instead of COMPLETED; without the store's collision check as well
    it would wait forever, as in the seed.
    """
    iid = clocked_client.start(looping_parent, {"n": 1, "got": []}, instance_id="looping")
    drain(worker, clock, until=[iid])
    state = clocked_client.get(iid)
    assert (state.status, state.output, state.execution_id) == ("COMPLETED", [2, 4, 6], 3)
    run = clocked_store.get_instance(iid).run_id
    children = {
        child_instance_id(iid, run, e, 1): clocked_store.get_instance(child_instance_id(iid, run, e, 1))
        for e in (1, 2, 3)
    }
    assert len(children) == 3 and all(r is not None for r in children.values())
    assert {c: r.status for c, r in children.items()} == dict.fromkeys(children, "COMPLETED")
    assert [r.parent for r in children.values()] == [ParentRef(iid, e, 1, run) for e in (1, 2, 3)]


@pytest.mark.parametrize("bad_id", ["order::sub::1", "sub::order", "a::sub::", "::sub::"])
def test_a_user_start_with_the_reserved_child_marker_is_rejected(client, store, bad_id):
    """Invariant 4: a user cannot take an id of the shape perdure generates for children: the start
    fails with a clear error before anything is stored.

    Verified: without the marker check in ``validate_instance_id`` the start succeeds and
    ``pytest.raises`` fails.
    """
    with pytest.raises(perdure.InvalidInstanceIdError, match="reserved sub-orchestration marker"):
        client.start(doubler, 1, instance_id=bad_id)
    assert store.get_instance(bad_id) is None
    assert client.list().items == []


def test_a_child_id_held_by_another_parents_instance_fails_the_parent_at_once(
    clocked_store, clocked_client, worker, clock: FakeClock
):
    """Invariant 4: the id ``shipment-7`` belongs to the (completed) child of ``p1``; when ``p2`` asks
    for a child with that id, the very commit of its turn enqueues
    ``SubOrchestrationFailed`` back to it, and ``p2`` catches ``SubOrchestrationError``
    with a message naming the id. The squatting instance is untouched.

    Verified: with ``_start_child`` silently skipping an id held by another parent's
    instance (the other engine's fast-ack), no failure is queued after ``p2``'s first turn
    and ``p2`` is left Running, waiting on a child that will never report.
    """
    client = clocked_client
    client.start(catching_parent, "shipment-7", instance_id="p1")
    drain(worker, clock, until=["p1"])
    assert client.get("p1").output == 10
    before = clocked_store.get_instance("shipment-7")

    client.start(catching_parent, "shipment-7", instance_id="p2")
    assert worker.turns() == 1  # p2 schedules the child: the failure is queued in that commit
    queued = [m.event for m in clocked_store.pending_messages("p2")]
    assert [type(e) for e in queued] == [SubOrchestrationFailed]
    drain(worker, clock, until=["p2"])
    state = client.get("p2")
    assert state.status == "COMPLETED"
    assert state.output["error_type"] == "perdure.errors.InstanceExistsError"
    assert "'shipment-7' is already used by another instance" in state.output["error"]
    assert clocked_store.get_instance("shipment-7") == before


def test_a_generated_child_id_squatted_by_a_terminal_instance_fails_an_uncaught_parent(
    clocked_store, clocked_client, worker, clock: FakeClock
):
    """Invariant 4, same guard with a generated id: an instance created outside the client (as by an
    older version, or another system sharing the store) already holds the id ``p3``'s run
    generates for its child, and is completed. ``p3`` does not catch, so it ends FAILED
    with a ``SubOrchestrationError`` that names the id, instead of waiting.

    Verified as above: with the silent skip, ``p3`` stays Running forever.
    """
    squatted = child_instance_id("p3", "r" * 32, 1, 1)
    clocked_store.create_instance(NewInstance(squatted, "doubler", 7))
    drain(worker, clock, until=[squatted])
    clocked_store.create_instance(NewInstance("p3", "plain_parent", None, run_id="r" * 32))
    drain(worker, clock, until=["p3"])
    state = clocked_client.get("p3")
    assert state.status == "FAILED"
    assert state.failure.type == "perdure.errors.SubOrchestrationError"
    assert f"{squatted!r} is already used by another instance" in str(state.failure.cause)
    assert clocked_store.get_instance(squatted).output == 14


class ResendChildStart:
    """A store whose next turn commit for the parent carries again a child start the parent
    already made: the at-least-once redelivery of a start."""

    def __init__(self, inner: perdure.Store, start: ChildStart) -> None:
        self.inner, self.start, self.sent = inner, start, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit_turns(self, commits: list[TurnCommit]) -> list:
        out = []
        for c in commits:
            if not self.sent and c.instance_id == self.start.parent.instance_id:
                c, self.sent = replace(c, children=[*c.children, self.start]), True
            out.append(c)
        return self.inner.commit_turns(out)


def test_a_redelivered_start_of_a_completed_child_leaves_the_parent_untouched(
    clocked_store, clocked_client, worker, clock: FakeClock
):
    """Invariants 4 and 7: the parent's child completed and reported; then the same start (same id, same
    parent execution and task) is delivered again. Nothing happens: no failure is queued
    to the parent, the child is unchanged, and the parent later completes with exactly one
    child completion in its history and nothing discarded.

    Verified: without the "same parent task: a redelivered start" check in
    ``_start_child``, a ``SubOrchestrationFailed`` is queued to the parent and the
    ``pending_messages`` assertion fails (later the parent would record it as a
    duplicate).
    """
    client = clocked_client
    iid = client.start(child_then_event, None, instance_id="rp")
    drain(worker, clock)
    assert client.get(iid).waiting_on.events  # the child reported; the parent waits
    child = clocked_store.get_instance("redelivered-child")
    assert (child.status, child.output) == ("COMPLETED", 8)

    run = clocked_store.get_instance(iid).run_id
    start = ChildStart("redelivered-child", "doubler", 4, ParentRef(iid, 1, 1, run))
    resending = StepWorker(app, ResendChildStart(clocked_store, start), "w2")
    client.raise_event(iid, "noise")  # gives the parent a turn, which carries the start again
    assert resending.turns() == 1 and resending.store.sent
    assert clocked_store.pending_messages(iid) == []
    assert clocked_store.get_instance("redelivered-child") == child

    client.raise_event(iid, "finish", "done")
    drain(worker, clock, until=[iid])
    state = client.get(iid, history=True)
    assert (state.status, state.output) == ("COMPLETED", [8, "done"])
    assert len(of_type(state.history, SubOrchestrationCompleted)) == 1
    assert not of_type(state.history, SubOrchestrationFailed)
    assert not of_type(state.history, MessageDiscarded)
    assert clocked_store.discarded_messages(instance_id=iid) == []


def test_a_child_that_outlives_its_parents_execution_reports_to_that_execution(
    clocked_store, clocked_client, worker, clock: FakeClock
):
    """Invariants 4 and 3: execution 1 starts a child and continues as new without awaiting it;
    execution 2 awaits a child of its own, also task 1. When the first child
    finishes, its completion is addressed to execution 1 (stamped at schedule time): it is
    discarded with a ``stale_execution`` record, and execution 2 is untouched until its own
    child reports.

    Verified: with ``_report_to_parent`` addressing the parent's *current* execution
    (``execution_id=None``), the first child's result completes execution 2's task 1 and
    the parent ends COMPLETED with "from execution 1" (the status assertion fails).
    """
    client = clocked_client
    iid = client.start(leaves_child_behind, {"round": 1}, instance_id="lp")
    drain(worker, clock)
    assert client.get(iid).execution_id == 2
    run = clocked_store.get_instance(iid).run_id
    first, second = child_instance_id(iid, run, 1, 1), child_instance_id(iid, run, 2, 1)
    client.raise_event(first, "go")
    drain(worker, clock)

    assert clocked_store.get_instance(first).status == "COMPLETED"
    state = client.get(iid, history=True)
    assert (state.status, state.execution_id) == ("RUNNING", 2)
    assert [c.instance_id for c in state.waiting_on.children] == [second]
    assert not of_type(state.history, SubOrchestrationCompleted)
    assert not of_type(state.history, MessageDiscarded)
    [record] = clocked_store.discarded_messages(instance_id=iid)
    assert (record.reason, record.execution_id) == (DiscardReason.STALE_EXECUTION, 1)
    assert record.event.result == "from execution 1"

    client.raise_event(second, "go")
    drain(worker, clock, until=[iid])
    state = client.get(iid)
    assert (state.status, state.output) == ("COMPLETED", "from execution 2")
    assert len(of_type(events(clocked_store, iid, 2), SubOrchestrationCompleted)) == 1
