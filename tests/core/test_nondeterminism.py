"""Replay that does not reproduce history fails loudly (invariant 6); so do foreign awaits."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest

from perdure.core.commands import FailOrchestration
from perdure.core.executor import OrchestrationExecutor, execute
from perdure.core.history import ActivityCompleted
from perdure.core.registry import App
from perdure.core.status import OrchestrationStatus

from .builders import (
    activity_completed,
    activity_scheduled,
    child_created,
    completed,
    discards,
    event,
    kinds,
    started,
    timer_created,
    turn,
)

REMEDY = (
    "keep the old code path for running instances behind ctx.patched(...), or register the new code as a new version"
)


def _app(fn):
    app = App()
    app.orchestration(name="saga")(fn)
    return app


def _fail(app, past, new=()):
    t = execute(app, "order-1", past, [turn(50.0), *new])
    assert t.status is OrchestrationStatus.FAILED
    assert t.failure.type == "perdure.errors.NonDeterminismError"
    assert t.commands == (FailOrchestration(failure=t.failure),)
    assert REMEDY in t.failure.message
    return t, t.failure.message


# The history every test starts from: reserve, then charge; charge is in flight.
PAST = [
    turn(1.0),
    started("saga", 1),
    activity_scheduled(1, "reserve", 1, at=1.0),
    turn(2.0),
    activity_completed(1, "r"),
    activity_scheduled(2, "charge", 1, at=2.0),
]


def test_changed_activity_name_names_the_position_what_history_holds_and_what_the_code_did():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.call_activity("charge_v2", x)

    _, message = _fail(_app(saga), PAST)
    assert "at history index 5 (task 2)" in message
    assert "the history recorded ActivityScheduled 'charge' (task 2)" in message
    assert "the code now produced ActivityScheduled 'charge_v2' (task 2)" in message
    assert "'saga' (instance 'order-1', execution 1)" in message


def test_reordered_calls_are_detected_at_the_first_difference():
    async def saga(ctx, x):
        await ctx.call_activity("charge", x)
        await ctx.call_activity("reserve", x)

    _, message = _fail(_app(saga), PAST)
    assert "at history index 2 (task 1)" in message
    assert (
        "recorded ActivityScheduled 'reserve' (task 1), "
        "but the code now produced ActivityScheduled 'charge' (task 1)" in message
    )


def test_removed_await_is_a_command_missing_from_the_code():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        return "done early"

    _, message = _fail(_app(saga), PAST)
    assert "recorded ActivityScheduled 'charge' (task 2), but the code now produced ExecutionCompleted" in message


def test_code_that_stops_short_of_a_recorded_command_is_detected():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.wait_for_event("never")

    _, message = _fail(_app(saga), PAST)
    assert "at history index 5 (task 2) the history recorded ActivityScheduled 'charge' (task 2)" in message
    assert "but the code now did not produce it" in message


def test_extra_await_while_history_has_the_turns_events():
    past = [*PAST, turn(3.0), activity_completed(2, "c"), completed("ok", at=3.0)]

    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.call_activity("charge", x)
        await ctx.call_activity("email", x)
        return "ok"

    t = execute(_app(saga), "order-1", past, ())
    assert t.status is OrchestrationStatus.FAILED
    assert "at history index 8 the history recorded ExecutionCompleted (the orchestrator returned)" in t.failure.message
    assert "the code now produced ActivityScheduled 'email' (task 3)" in t.failure.message


def test_extra_command_at_the_end_of_a_recorded_turn():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        ctx.call_activity("audit", x)  # new fire-and-forget call
        await ctx.call_activity("charge", x)

    _, message = _fail(_app(saga), [*PAST[:5], turn(3.0)])
    assert "after history index 4 (task 2) the code now produced ActivityScheduled 'audit' (task 2)" in message
    assert "which the history does not record (the next recorded event is TurnStarted at index 5)" in message


def test_extra_command_where_history_ends():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.call_activity("charge", x)
        await ctx.call_activity("more", x)

    _, message = _fail(_app(saga), [*PAST, turn(3.0), activity_completed(2)])
    assert "the code now produced ActivityScheduled 'more' (task 3)" in message
    assert "(the history ends there)" in message


def test_changed_child_name_or_id_is_detected():
    past = [turn(1.0), started("saga"), child_created(1, "ship", "order-1::sub::1", at=1.0)]

    async def renamed(ctx, _):
        await ctx.call_sub_orchestration("ship_v2")

    async def explicit_id(ctx, _):
        await ctx.call_sub_orchestration("ship", instance_id="ship-1")

    _, message = _fail(_app(renamed), past)
    assert "recorded SubOrchestrationCreated 'ship' as instance 'order-1::sub::1' (task 1)" in message
    assert "produced SubOrchestrationCreated 'ship_v2' as instance 'order-1::sub::1' (task 1)" in message
    _, message = _fail(_app(explicit_id), past)
    assert "produced SubOrchestrationCreated 'ship' as instance 'ship-1' (task 1)" in message


def test_timer_replaced_by_an_activity_is_detected():
    past = [turn(1.0), started("saga"), timer_created(1, 61.0, at=1.0)]

    async def saga(ctx, _):
        await ctx.call_activity("poll")

    _, message = _fail(_app(saga), past)
    assert "recorded TimerCreated (task 1), but the code now produced ActivityScheduled 'poll' (task 1)" in message


def _divergence(fn, past):
    executor = OrchestrationExecutor(_app(fn), "order-1")
    executor.execute(past, ())
    assert executor.divergence is not None
    return executor.divergence


def test_the_error_names_the_position_and_both_sides_as_fields_too():
    async def changed(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.call_activity("charge_v2", x)

    async def stops_short(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.wait_for_event("never")

    async def goes_further(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.call_activity("charge", x)
        await ctx.call_activity("more", x)

    error = _divergence(changed, PAST)
    assert (error.instance_id, error.orchestration, error.execution_id) == ("order-1", "saga", 1)
    assert (error.position, error.recorded, error.produced) == (
        5,
        "ActivityScheduled 'charge' (task 2)",
        "ActivityScheduled 'charge_v2' (task 2)",
    )
    assert "at history index 5 (task 2)" in str(error)
    error = _divergence(stops_short, PAST)
    assert (error.position, error.recorded) == (5, "ActivityScheduled 'charge' (task 2)")
    assert error.produced == "nothing (it is waiting on <EventTask 'never' pending>)"

    async def adds_a_call(ctx, x):
        await ctx.call_activity("reserve", x)
        ctx.call_activity("audit", x)
        await ctx.call_activity("charge", x)

    error = _divergence(adds_a_call, [*PAST[:5], turn(3.0)])
    assert (error.position, error.recorded, error.produced) == (
        5,
        "nothing (the next event is TurnStarted)",
        "ActivityScheduled 'audit' (task 2)",
    )
    error = _divergence(goes_further, [*PAST, turn(3.0), activity_completed(2)])
    assert (error.position, error.recorded, error.produced) == (
        8,
        "nothing (the history ends there)",
        "ActivityScheduled 'more' (task 3)",
    )


def test_a_history_the_code_reproduces_has_no_divergence():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.call_activity("charge", x)

    executor = OrchestrationExecutor(_app(saga), "order-1")
    assert executor.execute(PAST, ()).status is OrchestrationStatus.RUNNING
    assert executor.divergence is None


def test_changed_input_is_not_nondeterminism():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x * 10)
        return await ctx.call_activity("charge", x * 10)

    t = execute(_app(saga), "order-1", PAST, [turn(3.0), activity_completed(2, "paid")])
    assert t.output == "paid"


def test_the_failing_turn_records_the_failure_and_discards_its_messages():
    async def saga(ctx, x):
        await ctx.call_activity("other", x)

    t, _ = _fail(_app(saga), PAST, [activity_completed(2, "c"), event("E")])
    assert kinds(t.new_events) == [
        "TurnStarted",
        "ExecutionFailed",
        "MessageDiscarded",
        "MessageDiscarded",
    ]
    assert discards(t.new_events) == [
        ("after_completion", "ActivityCompleted"),
        ("after_completion", "EventRaised"),
    ]


def test_nondeterminism_cannot_be_swallowed_by_the_orchestrator():
    async def saga(ctx, x):
        with contextlib.suppress(BaseException):  # the point of the test
            await ctx.call_activity("other", x)
        await ctx.call_activity("another", x)
        return "continued"

    _fail(_app(saga), PAST)


def test_corrupt_history_with_a_second_completion_is_reported():
    async def saga(ctx, x):
        await ctx.call_activity("reserve", x)
        await ctx.call_activity("charge", x)

    past = [*PAST, turn(3.0), ActivityCompleted(task_id=1, result="again")]
    _, message = _fail(_app(saga), past)
    assert "history index 7 the history holds ActivityCompleted (task 1)" in message


# --- foreign awaitables -------------------------------------------------------------------


class _Foreign:
    def __await__(self):
        yield "something"


@pytest.mark.parametrize(
    ("awaited", "named"),
    [
        (lambda: asyncio.sleep(1), "awaited asyncio.sleep(...)"),
        (lambda: asyncio.sleep(0), "awaited None (a bare yield, as from asyncio.sleep(0))"),
        (_Foreign, "awaited 'something'"),
    ],
)
def test_awaiting_something_that_is_not_a_perdure_task_fails_clearly(awaited, named):
    async def saga(ctx, _):
        await awaited()

    t = execute(_app(saga), "order-1", [], [turn(1.0), started("saga")])
    assert t.status is OrchestrationStatus.FAILED
    assert t.failure.type == "TypeError"
    assert named in t.failure.message
    assert "use ctx.create_timer instead of asyncio.sleep, and ctx.call_activity" in t.failure.message


def test_awaiting_a_timer_does_not_need_an_event_loop():
    async def saga(ctx, _):
        await ctx.create_timer(timedelta(seconds=1))

    t = execute(_app(saga), "order-1", [], [turn(1.0), started("saga")])
    assert t.status is OrchestrationStatus.RUNNING


def test_asyncio_calls_that_need_a_loop_are_explained():
    async def saga(ctx, _):
        asyncio.get_running_loop()

    t = execute(_app(saga), "order-1", [], [turn(1.0), started("saga")])
    assert t.failure.type == "TypeError"
    assert "used asyncio, which needs a running event loop" in t.failure.message
    assert t.failure.cause.message == "no running event loop"
