"""Scenarios: sequences, fan-out/fan-in, timers, custom status, activity info, failures."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

import perdure
from perdure.core.history import ActivityCompleted, ActivityScheduled, ExecutionCompleted, TimerFired

app = perdure.App()


@app.activity
def inc(x: int) -> int:
    return x + 1


@app.activity
async def double(x: int) -> int:
    await asyncio.sleep(0.001)
    return 2 * x


@app.activity(name="whoami")
def who_am_i(_: object) -> dict:
    info = perdure.activity_info()
    return {"instance": info.instance_id, "task": info.task_id, "attempt": info.attempt, "name": info.name}


@app.activity
def explode(message: str) -> None:
    raise ValueError(message)


@app.orchestration
async def sequence(ctx: perdure.OrchestrationContext, x: int) -> int:
    for _ in range(5):
        x = await ctx.call_activity(inc, x)
    return await ctx.call_activity("double", x)


@app.orchestration
async def fan_out(ctx: perdure.OrchestrationContext, n: int) -> int:
    values = await ctx.when_all([ctx.call_activity(double, i) for i in range(n)])
    return sum(values)


@app.orchestration
async def sleeper(ctx: perdure.OrchestrationContext, seconds: float) -> str:
    before = ctx.now()
    await ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.now() - before).total_seconds()


@app.orchestration
async def staged(ctx: perdure.OrchestrationContext, _: None) -> str:
    ctx.set_custom_status({"stage": 1})
    await ctx.call_activity(inc, 1)
    ctx.set_custom_status({"stage": 2})
    await ctx.wait_for_event("go")
    return "done"


@app.orchestration
async def info(ctx: perdure.OrchestrationContext, _: None) -> dict:
    return await ctx.call_activity(who_am_i, None)


@app.orchestration
async def catches(ctx: perdure.OrchestrationContext, _: None) -> dict:
    try:
        await ctx.call_activity(explode, "boom")
    except perdure.ActivityError as err:
        return {"type": err.error_type, "message": err.error_message, "tb": "ValueError" in (err.traceback_text or "")}
    return {}


@app.orchestration
async def fails(ctx: perdure.OrchestrationContext, _: None) -> None:
    await ctx.call_activity(explode, "unhandled")


def test_sequence_of_activities_completes_with_history(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        iid = client.start(sequence, 1, instance_id="seq-1")
        state = client.wait(iid, timeout=10)
    assert state.status is perdure.OrchestrationStatus.COMPLETED
    assert state.output == 12
    full = client.get(iid, history=True)
    assert full.history_event_count == len(full.history)
    scheduled = [e.name for e in full.history if isinstance(e, ActivityScheduled)]
    assert scheduled == ["inc"] * 5 + ["double"]
    assert isinstance(full.history[-1], ExecutionCompleted)


def test_fan_out_fan_in_sums_every_result(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        state = client.wait(client.start(fan_out, 50), timeout=15)
    assert state.output == sum(2 * i for i in range(50))
    history = client.get(state.instance_id, history=True).history
    assert sum(isinstance(e, ActivityCompleted) for e in history) == 50


def test_durable_timer_fires_after_its_delay(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        started = time.monotonic()
        state = client.wait(client.start(sleeper, 0.3), timeout=10)
        elapsed = time.monotonic() - started
    assert state.status is perdure.OrchestrationStatus.COMPLETED
    assert state.output >= 0.3
    assert elapsed >= 0.3
    assert any(isinstance(e, TimerFired) for e in client.get(state.instance_id, history=True).history)


def test_custom_status_is_visible_while_running(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        iid = client.start(staged, None)
        deadline = time.monotonic() + 10
        while client.get(iid).custom_status != {"stage": 2} and time.monotonic() < deadline:
            time.sleep(0.01)
        running = client.get(iid)
        assert running.status is perdure.OrchestrationStatus.RUNNING
        assert [e.name for e in running.waiting_on.events] == ["go"]
        client.raise_event(iid, "go")
        state = client.wait(iid, timeout=10)
    assert state.custom_status == {"stage": 2}
    assert state.output == "done"


def test_activity_info_describes_the_running_activity(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        state = client.wait(client.start(info, None, instance_id="info-1"), timeout=10)
    assert state.output["instance"] == "info-1"
    assert state.output["attempt"] == 1
    assert state.output["name"] == "whoami"


def test_activity_error_carries_type_message_and_traceback(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        state = client.wait(client.start(catches, None), timeout=10)
    assert state.output == {"type": "ValueError", "message": "boom", "tb": True}


def test_uncaught_activity_error_fails_the_instance(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        state = client.wait(client.start(fails, None), timeout=10)
    assert state.status is perdure.OrchestrationStatus.FAILED
    assert "unhandled" in str(state.failure)


def test_start_many_starts_every_instance_in_one_go(store, client):
    ids = client.start_many(sequence, [1, 2, 3], instance_ids=["m-1", "m-2", "m-3"])
    assert ids == ["m-1", "m-2", "m-3"]
    with pytest.raises(perdure.InstanceExistsError, match="m-2"):
        client.start_many(sequence, [4, 5], instance_ids=["m-4", "m-2"])
    assert client.get("m-4") is None  # all or nothing
    with perdure.Worker(app, store, poll_interval=0.05):
        assert [client.wait(i, timeout=10).output for i in ids] == [12, 14, 16]


def test_start_rejects_bad_input_before_storing(store, client):
    with pytest.raises(perdure.SerializationError, match="not JSON-serialisable"):
        client.start(sequence, {1, 2}, instance_id="bad-input")
    with pytest.raises(perdure.InvalidInstanceIdError, match="reserved"):
        client.start(sequence, 1, instance_id="parent::sub::1")
    assert client.get("bad-input") is None


def test_second_start_of_a_running_id_is_rejected(store, client):
    client.start(sequence, 1, instance_id="dup")
    with pytest.raises(perdure.InstanceExistsError):
        client.start(sequence, 1, instance_id="dup")


def test_wait_times_out_with_timeout_error(store, client):
    iid = client.start(sequence, 1)  # no worker
    with pytest.raises(TimeoutError, match="PENDING"):
        client.wait(iid, timeout=0.1)


def test_unknown_instance_operations_raise_not_found(client):
    with pytest.raises(perdure.InstanceNotFoundError):
        client.raise_event("nope", "x")
    with pytest.raises(perdure.InstanceNotFoundError):
        client.terminate("nope")
    assert client.get("nope") is None
