"""Scenarios: external events, timeouts, when_any races and retry policies."""

from __future__ import annotations

import time
from datetime import timedelta

import perdure
from perdure.core.history import ActivityFailed, ActivityScheduled, TimerCreated

app = perdure.App()
attempts: dict[str, int] = {}


@app.activity
def flaky(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if perdure.activity_info().attempt < 3:
        raise ConnectionError(f"transient failure {attempts[key]}")
    return f"ok after {perdure.activity_info().attempt}"


@app.activity
def always_fails(_: object) -> None:
    raise ConnectionError("down")


class PermanentError(Exception):
    pass


@app.activity
def permanent(_: object) -> None:
    raise PermanentError("invalid card")


FAST = perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(milliseconds=20), backoff=2.0)


@app.orchestration
async def approval(ctx: perdure.OrchestrationContext, timeout_s: float | None) -> object:
    timeout = timedelta(seconds=timeout_s) if timeout_s is not None else None
    try:
        return await ctx.wait_for_event("Approval", timeout=timeout)
    except perdure.TaskTimeoutError as err:
        return f"timeout: {err}"


@app.orchestration
async def two_events(ctx: perdure.OrchestrationContext, _: None) -> list:
    await ctx.create_timer(timedelta(milliseconds=200))
    first = await ctx.wait_for_event("E")
    second = await ctx.wait_for_event("E")
    return [first, second]


@app.orchestration
async def race(ctx: perdure.OrchestrationContext, _: None) -> str:
    cancel = ctx.wait_for_event("Cancel")
    deadline = ctx.create_timer(timedelta(milliseconds=300))
    winner = await ctx.when_any([cancel, deadline])
    return "cancelled" if winner is cancel else "deadline"


@app.orchestration
async def retrying(ctx: perdure.OrchestrationContext, key: str) -> str:
    return await ctx.call_activity(flaky, key, retry=FAST)


@app.orchestration
async def exhausted(ctx: perdure.OrchestrationContext, _: None) -> str:
    try:
        await ctx.call_activity(always_fails, None, retry=FAST)
    except perdure.ActivityError as err:
        return f"gave up: {err.error_message}"
    return "?"


@app.orchestration
async def non_retryable(ctx: perdure.OrchestrationContext, _: None) -> str:
    policy = perdure.RetryPolicy(
        max_attempts=5, first_delay=timedelta(milliseconds=10), non_retryable=(PermanentError,)
    )
    try:
        await ctx.call_activity(permanent, None, retry=policy)
    except perdure.ActivityError as err:
        return err.error_message
    return "?"


def _worker(store):
    return perdure.Worker(app, store, poll_interval=0.05)


def test_wait_for_event_receives_the_raised_payload(store, client):
    with _worker(store):
        iid = client.start(approval, None)
        time.sleep(0.1)
        client.raise_event(iid, "Approval", {"by": "dana"})
        assert client.wait(iid, timeout=10).output == {"by": "dana"}


def test_wait_for_event_with_timeout_raises_task_timeout(store, client):
    with _worker(store):
        state = client.wait(client.start(approval, 0.2), timeout=10)
    assert state.output.startswith("timeout:")
    assert "Approval" in state.output


def test_event_raised_before_the_wait_is_kept_in_order(store, client):
    with _worker(store):
        iid = client.start(two_events, None)
        client.raise_event(iid, "E", 1)
        client.raise_event(iid, "E", 2)
        assert client.wait(iid, timeout=10).output == [1, 2]


def test_when_any_returns_the_first_task_to_finish(store, client):
    with _worker(store):
        timed_out = client.start(race, None)
        cancelled = client.start(race, None)
        client.raise_event(cancelled, "Cancel")
        assert client.wait(cancelled, timeout=10).output == "cancelled"
        assert client.wait(timed_out, timeout=10).output == "deadline"


def test_retry_succeeds_after_transient_failures_with_durable_timers(store, client):
    with _worker(store):
        state = client.wait(client.start(retrying, "k1"), timeout=10)
    assert state.output == "ok after 3"
    history = client.get(state.instance_id, history=True).history
    assert [e.attempt for e in history if isinstance(e, ActivityScheduled)] == [1, 2, 3]
    assert sum(isinstance(e, ActivityFailed) for e in history) == 2
    assert sum(isinstance(e, TimerCreated) for e in history) == 2  # the waits are durable timers


def test_retry_gives_up_after_max_attempts(store, client):
    with _worker(store):
        state = client.wait(client.start(exhausted, None), timeout=10)
    assert state.output == "gave up: down"
    history = client.get(state.instance_id, history=True).history
    assert sum(isinstance(e, ActivityScheduled) for e in history) == 3


def test_non_retryable_error_is_not_retried(store, client):
    with _worker(store):
        state = client.wait(client.start(non_retryable, None), timeout=10)
    assert state.output == "invalid card"
    history = client.get(state.instance_id, history=True).history
    assert sum(isinstance(e, ActivityScheduled) for e in history) == 1
