"""Scenarios: rewind a FAILED instance from its point of failure (after an activity failure,
a failed child, or a nondeterminism failure once the code is fixed); restart an instance with
its input; reset one to the end of an earlier turn. On both stores."""

from __future__ import annotations

import time
from collections import Counter

import pytest

import perdure
from perdure.core.history import ActivityFailed, ExecutionRewound, ExecutionStarted, TurnStarted

CALLS: Counter[str] = Counter()
BROKEN: set[str] = set()

app = perdure.App()


@app.activity
def step(name: str) -> str:
    CALLS[name] += 1
    if name in BROKEN:
        raise RuntimeError(f"{name} is broken")
    return f"{name} done"


@app.orchestration
async def three_steps(ctx: perdure.OrchestrationContext, _: None) -> list:
    return [await ctx.call_activity(step, name) for name in ("one", "two", "three")]


@app.orchestration
async def child_steps(ctx: perdure.OrchestrationContext, prefix: str) -> list:
    return [await ctx.call_activity(step, f"{prefix}-{n}") for n in (1, 2)]


@app.orchestration
async def parent_of_steps(ctx: perdure.OrchestrationContext, _: None) -> list:
    first = await ctx.call_activity(step, "parent-first")
    return [first, await ctx.call_sub_orchestration(child_steps, "kid")]


@app.orchestration
async def waiting_child(ctx: perdure.OrchestrationContext, _: None) -> str:
    return await ctx.wait_for_event("release")


@app.orchestration
async def parent_and_side_step(ctx: perdure.OrchestrationContext, _: None) -> list:
    child = ctx.call_sub_orchestration(waiting_child, None, instance_id="side-child")
    return await ctx.when_all([child, ctx.call_activity(step, "side")])


@app.orchestration
async def after_event(ctx: perdure.OrchestrationContext, _: None) -> str:
    value = await ctx.wait_for_event("go")
    return await ctx.call_activity(step, f"after-{value}")


@pytest.fixture(autouse=True)
def _fresh_counters():
    CALLS.clear()
    BROKEN.clear()


def _worker(store, code=app):
    return perdure.Worker(code, store, poll_interval=0.02)


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_rewind_retries_the_failed_activity_and_keeps_what_came_before(store, client):
    BROKEN.add("two")
    with _worker(store):
        failed = client.wait(client.start(three_steps, None, instance_id="r1"), timeout=10)
        assert failed.status is perdure.OrchestrationStatus.FAILED and "two is broken" in str(failed.failure)
        BROKEN.clear()  # the fix is deployed
        client.rewind("r1", reason="card processor fixed")
        done = client.wait("r1", timeout=10)
    assert done.output == ["one done", "two done", "three done"]
    assert (done.run_id, done.execution_id) == (failed.run_id, failed.execution_id)  # the same run
    assert Counter({"one": 1, "two": 2, "three": 1}) == CALLS
    history = client.history("r1")
    [record] = [e for e in history if isinstance(e, ExecutionRewound)]
    assert record.reason == "card processor fixed" and "two is broken" in str(record.failure)
    assert isinstance(history[record.undone_from], TurnStarted)
    assert any(isinstance(e, ActivityFailed) for e in history)  # the undone turn stays readable


def test_rewind_rewinds_a_failed_child_too(store, client):
    BROKEN.add("kid-2")
    with _worker(store):
        failed = client.wait(client.start(parent_of_steps, None, instance_id="p1"), timeout=10)
        [child] = client.list(parent_instance_id="p1").items
        assert failed.status is perdure.OrchestrationStatus.FAILED and child.status.value == "FAILED"
        BROKEN.clear()
        client.rewind("p1")
        done = client.wait("p1", timeout=10)
        assert client.wait(child.instance_id, timeout=10).run_id == child.run_id  # rewound, not replaced
    assert done.output == ["parent-first done", ["kid-1 done", "kid-2 done"]]
    assert Counter({"parent-first": 1, "kid-1": 1, "kid-2": 2}) == CALLS


def test_rewind_after_a_nondeterminism_failure_replays_on_the_fixed_code(store, client):
    bad = perdure.App()
    bad.activity(step)

    @bad.orchestration(name="after_event")
    async def after_event_changed(ctx: perdure.OrchestrationContext, _: None) -> str:
        await ctx.call_activity(step, "a new first step")  # not what running instances did
        return await ctx.wait_for_event("go")

    with _worker(store):
        client.start(after_event, None, instance_id="n1")
        _until(lambda: client.get("n1").status.value == "RUNNING")
    client.raise_event("n1", "go", "x")
    with _worker(store, bad):  # the bad deploy
        failed = client.wait("n1", timeout=10)
    assert failed.failure.type == "perdure.errors.NonDeterminismError"
    with pytest.raises(perdure.InstanceStateError, match="only a FAILED instance"):
        client.rewind(client.start(after_event, None))
    with _worker(store):  # rolled back
        client.rewind("n1")
        assert client.wait("n1", timeout=10).output == "after-x done"  # the event came again


def test_rewind_of_an_unknown_instance_is_a_clear_error(client):
    with pytest.raises(perdure.InstanceNotFoundError, match="no instance with id 'nope'"):
        client.rewind("nope")


def test_restart_runs_the_input_again_as_a_new_run_or_under_a_new_id(store, client):
    with _worker(store):
        first = client.wait(client.start(three_steps, None, instance_id="s1"), timeout=10)
        assert client.restart("s1") == "s1"
        again = client.wait("s1", timeout=10)
        assert client.restart("s1", "s1-copy") == "s1-copy"
        copy = client.wait("s1-copy", timeout=10)
    assert again.output == first.output == copy.output
    assert again.run_id != first.run_id and again.execution_id == 2
    [start] = [e for e in client.history("s1") if isinstance(e, ExecutionStarted)]
    assert (start.origin.kind, start.origin.run_id) == ("restart", first.run_id)
    old = client.history("s1", execution_id=1)  # the first run's history stays readable
    assert old[-1].result == first.output


def test_restart_in_place_needs_an_ended_instance(store, client):
    client.start(waiting_child, None, instance_id="w1")
    with pytest.raises(perdure.InstanceStateError, match="cannot restart instance 'w1' in place: it is PENDING"):
        client.restart("w1")
    assert client.restart("w1", "w2") == "w2"


def test_reset_goes_back_to_the_end_of_a_turn_and_runs_on_from_there(store, client):
    with _worker(store):
        first = client.wait(client.start(three_steps, None, instance_id="t1"), timeout=10)
        run_id = client.reset("t1", 2, reason="two wrote bad data")
        done = client.wait("t1", timeout=10)
    assert done.run_id == run_id != first.run_id and done.output == first.output
    assert Counter({"one": 1, "two": 2, "three": 2}) == CALLS  # turn 2 had scheduled "two"
    [start] = [e for e in client.history("t1") if isinstance(e, ExecutionStarted)]
    assert (start.origin.kind, start.origin.turn, start.origin.reason) == ("reset", 2, "two wrote bad data")
    assert client.history("t1", execution_id=1)[-1].result == first.output


def test_reset_delivers_again_the_events_that_came_after_the_turn(store, client):
    with _worker(store):
        client.start(after_event, None, instance_id="e1")
        _until(lambda: client.get("e1").status.value == "RUNNING")
        client.raise_event("e1", "go", "v")
        client.wait("e1", timeout=10)
        client.reset("e1", 1)
        assert client.wait("e1", timeout=10).output == "after-v done"
    assert CALLS["after-v"] == 2


def test_reset_re_attaches_a_child_still_running_and_schedules_what_failed_again(store, client):
    BROKEN.add("side")
    with _worker(store):
        failed = client.wait(client.start(parent_and_side_step, None, instance_id="k1"), timeout=10)
        assert failed.status.value == "FAILED"
        # The child runs on (its first turn may come after the parent's failure).
        _until(lambda: client.get("side-child").status.value == "RUNNING")
        BROKEN.clear()
        client.reset("k1", 1)
        _until(lambda: client.get("k1").status.value == "RUNNING" and CALLS["side"] == 2)
        client.raise_event("side-child", "release", "freed")
        done = client.wait("k1", timeout=10)
    assert done.output == ["freed", "side done"]
    child = client.get("side-child")
    assert child.run_id  # the same child run, now reporting to the new run of k1


@pytest.mark.parametrize(
    ("to_turn", "message"),
    [(9, "its history has turns 1 to 4, not 9"), (4, "the execution had ended by turn 4")],
)
def test_reset_refuses_turns_it_cannot_go_back_to(store, client, to_turn, message):
    with _worker(store):
        client.wait(client.start(three_steps, None, instance_id="x1"), timeout=10)
    with pytest.raises(perdure.InstanceStateError, match=f"cannot reset instance 'x1': {message}"):
        client.reset("x1", to_turn)
