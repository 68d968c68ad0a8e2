"""Scenarios: sub-orchestrations, continue-as-new, terminate, suspend/resume, purge, list."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

import perdure
from perdure.core.history import EventRaised, ExecutionTerminated

app = perdure.App()


@app.activity
def add(pair: list[int]) -> int:
    return pair[0] + pair[1]


@app.activity
def fail_with(message: str) -> None:
    raise RuntimeError(message)


@app.orchestration
async def child_adds(ctx: perdure.OrchestrationContext, pair: list[int]) -> int:
    return await ctx.call_activity(add, pair)


@app.orchestration
async def child_fails(ctx: perdure.OrchestrationContext, message: str) -> None:
    await ctx.call_activity(fail_with, message)


@app.orchestration
async def parent(ctx: perdure.OrchestrationContext, _: None) -> dict:
    total = await ctx.call_sub_orchestration(child_adds, [2, 3])
    try:
        await ctx.call_sub_orchestration(child_fails, "child broke")
    except perdure.SubOrchestrationError as err:
        return {"total": total, "error": str(err.failure)}
    return {"total": total}


@app.orchestration
async def counter(ctx: perdure.OrchestrationContext, state: dict) -> dict:
    if state["n"] < state["until"]:
        await ctx.create_timer(timedelta(milliseconds=30))
        ctx.continue_as_new({**state, "n": state["n"] + 1})
    return state


@app.orchestration
async def collector(ctx: perdure.OrchestrationContext, state: dict) -> list:
    """Takes one event per execution and continues as new: no event may be lost in the hand-over."""
    item = await ctx.wait_for_event("item")
    got = [*state["got"], item]
    if len(got) < state["want"]:
        ctx.continue_as_new({"got": got, "want": state["want"]})
    return got


@app.orchestration
async def waits_forever(ctx: perdure.OrchestrationContext, _: None) -> None:
    await ctx.wait_for_event("never")


@app.orchestration
async def parent_of_waiters(ctx: perdure.OrchestrationContext, _: None) -> None:
    await ctx.when_all([ctx.call_sub_orchestration(waits_forever, None) for _ in range(2)])


@app.orchestration
async def gated(ctx: perdure.OrchestrationContext, _: None) -> list:
    a = await ctx.wait_for_event("a")
    b = await ctx.wait_for_event("b")
    return [a, b]


def _worker(store):
    return perdure.Worker(app, store, poll_interval=0.05)


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_sub_orchestrations_return_results_and_failures(store, client):
    with _worker(store):
        state = client.wait(client.start(parent, None, instance_id="p"), timeout=10)
    assert state.output["total"] == 5
    assert "child broke" in state.output["error"]
    children = client.list(parent_instance_id="p").items
    assert {c.name: c.status.value for c in children} == {"child_adds": "COMPLETED", "child_fails": "FAILED"}
    assert all(c.instance_id.startswith("p::sub::") for c in children)


def test_continue_as_new_starts_fresh_executions(store, client):
    with _worker(store):
        state = client.wait(client.start(counter, {"n": 0, "until": 3}), timeout=10)
    assert state.output == {"n": 3, "until": 3}
    assert state.execution_id == 4
    history = client.get(state.instance_id, history=True).history
    assert len(history) < 12  # only the last execution's history


def test_events_arriving_during_continue_as_new_are_kept(store, client):
    with _worker(store):
        iid = client.start(collector, {"got": [], "want": 5})
        for i in range(5):
            client.raise_event(iid, "item", i)
        state = client.wait(iid, timeout=10)
    assert state.output == [0, 1, 2, 3, 4]


def test_terminate_cascades_to_unfinished_children(store, client):
    with _worker(store):
        iid = client.start(parent_of_waiters, None, instance_id="tp")
        _until(
            lambda: (
                len(client.list(parent_instance_id="tp").items) == 2
                and all(c.status.value == "RUNNING" for c in client.list(parent_instance_id="tp").items)
            )
        )
        client.terminate(iid, reason="operator says stop")
        state = client.wait(iid, timeout=10)
        children = client.list(parent_instance_id="tp").items
        for child in children:
            assert client.wait(child.instance_id, timeout=10).status is perdure.OrchestrationStatus.TERMINATED
    assert state.status is perdure.OrchestrationStatus.TERMINATED
    history = client.get(iid, history=True).history
    assert [e.reason for e in history if isinstance(e, ExecutionTerminated)] == ["operator says stop"]
    with pytest.raises(perdure.InstanceStateError, match="already TERMINATED"):
        client.raise_event(iid, "x")


def test_suspended_instance_keeps_events_until_resumed(store, client):
    with _worker(store):
        iid = client.start(gated, None)
        _until(lambda: client.get(iid).status is perdure.OrchestrationStatus.RUNNING)
        client.suspend(iid, reason="maintenance")
        _until(lambda: client.get(iid).status is perdure.OrchestrationStatus.SUSPENDED)
        client.raise_event(iid, "a", 1)
        client.raise_event(iid, "b", 2)
        time.sleep(0.3)
        assert client.get(iid).status is perdure.OrchestrationStatus.SUSPENDED
        client.resume(iid)
        state = client.wait(iid, timeout=10)
    assert state.output == [1, 2]
    assert sum(isinstance(e, EventRaised) for e in client.get(iid, history=True).history) == 2


def test_purge_removes_only_terminal_instances(store, client):
    iid = client.start(waits_forever, None)
    with pytest.raises(perdure.InstanceStateError, match="terminate it first"):
        client.purge(iid)
    with _worker(store):
        client.terminate(iid)
        client.wait(iid, timeout=10)
    client.purge(iid)
    assert client.get(iid) is None
    with pytest.raises(perdure.InstanceNotFoundError):
        client.purge(iid)


def test_list_filters_and_pages_with_a_cursor(store, client):
    ids = [client.start(waits_forever, None, instance_id=f"w-{i:02d}") for i in range(7)]
    client.start(gated, None, instance_id="g-1")
    seen = []
    cursor = None
    while True:
        page = client.list(name="waits_forever", limit=3, cursor=cursor)
        seen.extend(s.instance_id for s in page.items)
        assert len(page.items) <= 3
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    assert [s.instance_id for s in client.list(status="PENDING", name="gated").items] == ["g-1"]
    with pytest.raises(perdure.InvalidInputError, match="unknown status"):
        client.list(status="SLEEPING")
