"""Timers, orchestration time, external events and waits with a timeout."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from perdure.core.commands import CreateTimer
from perdure.core.executor import OrchestrationExecutor
from perdure.core.history import DiscardReason, TimerFired
from perdure.core.registry import App
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import AwaitedEvent, AwaitedTimer
from perdure.errors import TaskTimeoutError

from .builders import Scenario, discards, event, kinds, started, timer_fired, turn

app = App()


@app.orchestration
async def sleeper(ctx, seconds):
    before = ctx.now()
    await ctx.create_timer(timedelta(seconds=seconds))
    return [before.isoformat(), ctx.now().isoformat()]


@app.orchestration
async def until(ctx, iso):
    await ctx.create_timer(datetime.fromisoformat(iso))
    return "woke"


@app.orchestration
async def two_waits(ctx, name):
    first = await ctx.wait_for_event(name)
    second = await ctx.wait_for_event(name)
    return [first, second]


@app.orchestration
async def timer_then_wait(ctx, _):
    await ctx.create_timer(timedelta(seconds=10))
    return await ctx.wait_for_event("Go")


@app.orchestration
async def approval(ctx, seconds):
    try:
        return await ctx.wait_for_event("Approval", timeout=timedelta(seconds=seconds))
    except TaskTimeoutError as err:
        return f"timeout: {err}"


@app.orchestration
async def approval_then_wait(ctx, _):
    with contextlib.suppress(TaskTimeoutError):
        await ctx.wait_for_event("Approval", timeout=timedelta(seconds=5))
    await ctx.create_timer(timedelta(seconds=60))
    return "done"


@app.orchestration
async def approval_then_timer(ctx, _):
    got = await ctx.wait_for_event("Approval", timeout=timedelta(seconds=5))
    await ctx.create_timer(timedelta(seconds=60))
    return got


def test_timer_fires_at_turn_time_plus_delta_and_now_follows_the_turn():
    s = Scenario(app)
    t = s.start("sleeper", 30, at=1000.0)
    assert t.commands == (CreateTimer(task_id=1, fire_at=1030.0),)
    assert t.waiting_on.timers == (AwaitedTimer(1, 1030.0, "timer"),)
    t = s.turn(1031.5, timer_fired(1))
    assert t.output == [
        datetime.fromtimestamp(1000.0, UTC).isoformat(),
        datetime.fromtimestamp(1031.5, UTC).isoformat(),
    ]


def test_timer_at_an_aware_datetime():
    when = datetime(2030, 1, 1, tzinfo=UTC)
    t = Scenario(app).start("until", when.isoformat())
    assert t.commands == (CreateTimer(task_id=1, fire_at=when.timestamp()),)


def test_timer_at_a_naive_datetime_is_rejected():
    t = Scenario(app).start("until", "2030-01-01T00:00:00")
    assert t.status is OrchestrationStatus.FAILED
    assert "aware datetime" in t.failure.message


def test_now_is_aware_utc():
    app2 = App()

    @app2.orchestration
    async def when(ctx, _):
        return ctx.now().tzinfo is UTC

    assert Scenario(app2).start("when").output is True


def test_events_raised_before_the_wait_are_kept_in_arrival_order():
    s = Scenario(app)
    s.start("timer_then_wait")
    t = s.turn(101.0, event("Go", 1), event("Go", 2), event("Other", 3))
    assert t.status is OrchestrationStatus.RUNNING
    assert [e.input for e in s.live.pending_events] == [1, 2, 3]
    t = s.turn(111.0, timer_fired(1))
    assert t.output == 1
    assert t.status is OrchestrationStatus.COMPLETED


def test_a_wait_begun_before_the_event_gets_it_when_it_arrives():
    s = Scenario(app)
    t = s.start("two_waits", "E", at=50.0)
    assert t.waiting_on.events == (AwaitedEvent("E", 50.0, None),)
    t = s.turn(51.0, event("E", "a"))
    assert t.waiting_on.events == (AwaitedEvent("E", 51.0, None),)
    t = s.turn(52.0, event("Other", "x"), event("E", "b"))
    assert t.output == ["a", "b"]


def test_event_names_match_exactly():
    s = Scenario(app)
    s.start("two_waits", "Approval")
    t = s.turn(101.0, event("approval", 1), event("Approval ", 2))
    assert t.status is OrchestrationStatus.RUNNING
    assert [e.name for e in s.live.pending_events] == ["approval", "Approval "]


def test_wait_with_timeout_creates_a_timeout_timer_and_names_the_deadline():
    t = Scenario(app).start("approval", 30, at=10.0)
    assert t.commands == (CreateTimer(task_id=1, fire_at=40.0),)
    assert t.waiting_on.timers == (AwaitedTimer(1, 40.0, "timeout"),)
    assert t.waiting_on.events == (AwaitedEvent("Approval", 10.0, 40.0),)


def test_wait_times_out_with_task_timeout_error_naming_the_event():
    s = Scenario(app)
    s.start("approval", 30, at=10.0)
    t = s.turn(40.0, timer_fired(1))
    assert t.output == "timeout: timed out after 0:00:30 waiting for external event 'Approval'"


def test_event_before_the_deadline_wins_and_the_late_timer_is_applied_silently():
    s = Scenario(app)
    s.start("approval_then_timer", None, at=10.0)
    t = s.turn(12.0, event("Approval", "yes"))
    assert t.commands == (CreateTimer(task_id=2, fire_at=72.0),)
    assert t.waiting_on.timers == (AwaitedTimer(2, 72.0, "timer"),)  # the timeout timer is no longer awaited
    t = s.turn(15.0, timer_fired(1))
    assert kinds(t.new_events) == [
        "TurnStarted",
        "TimerFired",
    ]  # known task: applied, not discarded
    assert t.status is OrchestrationStatus.RUNNING
    t = s.turn(72.0, timer_fired(2))
    assert t.output == "yes"


def test_after_a_timeout_a_late_event_is_buffered_not_swallowed():
    s = Scenario(app)
    s.start("approval_then_wait", None, at=10.0)
    s.turn(15.0, timer_fired(1))
    t = s.turn(16.0, event("Approval", "late"))
    assert [e.input for e in s.live.pending_events] == ["late"]
    assert t.waiting_on.events == ()


def test_event_already_buffered_satisfies_a_wait_with_timeout_without_a_timer():
    app2 = App()

    @app2.orchestration
    async def later(ctx, _):
        await ctx.create_timer(timedelta(seconds=1))
        return await ctx.wait_for_event("E", timeout=timedelta(seconds=5))

    s = Scenario(app2)
    s.start("later")
    s.turn(100.5, event("E", 7))
    t = s.turn(101.0, timer_fired(1))
    assert t.output == 7
    assert not any(isinstance(c, CreateTimer) for c in t.commands)


def test_duplicate_timer_fired_is_discarded():
    s = Scenario(app)
    s.start("timer_then_wait")
    s.turn(111.0, timer_fired(1))
    t = s.turn(112.0, TimerFired(task_id=1))
    assert discards(t.new_events) == [(DiscardReason.DUPLICATE, "TimerFired")]


def test_events_before_execution_started_are_buffered_for_it():
    # the runtime may deliver carried-over events in the first turn of an execution
    ex = OrchestrationExecutor(app, "i")
    t = ex.execute((), [turn(1.0), event("E", 1), started("two_waits", "E"), event("E", 2)])
    assert t.output == [1, 2]


def test_bad_event_name_or_timeout_is_rejected():
    app2 = App()

    @app2.orchestration
    async def bad(ctx, which):
        if which == "name":
            return await ctx.wait_for_event("")
        return await ctx.wait_for_event("E", timeout=5)

    assert "event name" in Scenario(app2).start("bad", "name").failure.message
    assert "timeout must be a timedelta" in Scenario(app2).start("bad", "timeout").failure.message
