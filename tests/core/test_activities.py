"""Activities and sub-orchestrations: scheduling, results, failures, duplicates."""

from __future__ import annotations

import pytest

from perdure.core.commands import (
    CompleteOrchestration,
    FailOrchestration,
    ScheduleActivity,
    StartSubOrchestration,
)
from perdure.core.executor import execute
from perdure.core.history import (
    ActivityCompleted,
    ActivityScheduled,
    DiscardReason,
    ExecutionCompleted,
    ParentRef,
    SubOrchestrationCreated,
)
from perdure.core.registry import App
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import AwaitedActivity, AwaitedChild
from perdure.errors import ActivityError, InvalidInstanceIdError, SubOrchestrationError

from .builders import (
    Scenario,
    activity_completed,
    activity_failed,
    activity_scheduled,
    child_completed,
    child_failed,
    discards,
    event,
    kinds,
    of_type,
    started,
    timer_fired,
    turn,
)

app = App()


@app.activity(name="charge")
def charge_card(order: dict) -> dict:
    return order


@app.orchestration
async def one_activity(ctx, order):
    return await ctx.call_activity(charge_card, order)


@app.orchestration
async def sequence(ctx, n):
    results = []
    for i in range(n):
        results.append(await ctx.call_activity("step", i))
    return results


@app.orchestration
async def catches_activity_error(ctx, _):
    try:
        await ctx.call_activity("charge", 1)
    except ActivityError as err:
        return [err.error_type, err.error_message, str(err)]
    return "no error"


@app.orchestration
async def raises(ctx, _):
    await ctx.call_activity("charge", 1)
    raise KeyError("missing")


@app.orchestration
async def bad_input(ctx, _):
    await ctx.call_activity("charge", {1, 2})


@app.orchestration
async def bad_result(ctx, _):
    return object()


@app.orchestration
async def with_child(ctx, child_id):
    return await ctx.call_sub_orchestration("ship", {"to": "x"}, instance_id=child_id)


@app.orchestration
async def child_fails(ctx, _):
    try:
        await ctx.call_sub_orchestration("ship", 1)
    except SubOrchestrationError as err:
        return str(err)


def test_first_turn_schedules_the_activity_with_its_registered_name_and_input():
    t = Scenario(app).start("one_activity", {"id": 7})
    assert t.status is OrchestrationStatus.RUNNING
    assert t.commands == (ScheduleActivity(task_id=1, name="charge", input={"id": 7}, attempt=1),)
    assert kinds(t.new_events) == ["TurnStarted", "ExecutionStarted", "ActivityScheduled"]
    assert t.new_events[-1] == activity_scheduled(1, "charge", {"id": 7}, at=100.0)
    assert t.waiting_on.activities == (AwaitedActivity(1, "charge", 1, 100.0),)


def test_activity_result_becomes_the_orchestration_output():
    s = Scenario(app)
    s.start("one_activity", {"id": 7})
    t = s.turn(101.0, activity_completed(1, {"receipt": 9}))
    assert t.status is OrchestrationStatus.COMPLETED
    assert t.output == {"receipt": 9}
    assert t.commands == (CompleteOrchestration(result={"receipt": 9}),)
    assert t.new_events[-1] == ExecutionCompleted(timestamp=101.0, result={"receipt": 9})
    assert t.waiting_on.is_empty()


def test_task_ids_count_up_and_completions_match_by_id():
    s = Scenario(app)
    s.start("sequence", 3)
    s.turn(101.0, activity_completed(1, "a"))
    s.turn(102.0, activity_completed(2, "b"))
    t = s.turn(103.0, activity_completed(3, "c"))
    assert t.output == ["a", "b", "c"]
    assert [e.task_id for e in of_type(s.history, ActivityScheduled)] == [1, 2, 3]


def test_several_completions_in_one_turn_are_applied_in_order():
    s = Scenario(app)
    s.start("sequence", 2)
    # task 2 does not exist yet when its completion arrives: it is discarded, not buffered
    t = s.turn(101.0, activity_completed(2, "early"), activity_completed(1, "a"))
    assert discards(t.new_events) == [(DiscardReason.UNKNOWN_TASK, "ActivityCompleted")]
    assert t.commands == (ScheduleActivity(task_id=2, name="step", input=1),)


def test_activity_failure_raises_activity_error_in_the_orchestrator():
    s = Scenario(app)
    s.start("catches_activity_error")
    t = s.turn(101.0, activity_failed(1, "ValueError", "card declined"))
    assert t.output == [
        "ValueError",
        "card declined",
        "activity 'charge' failed: ValueError: card declined",
    ]


def test_uncaught_error_fails_the_instance_with_its_failure():
    s = Scenario(app)
    s.start("raises")
    t = s.turn(101.0, activity_completed(1))
    assert t.status is OrchestrationStatus.FAILED
    assert t.failure.type == "KeyError"
    assert "missing" in t.failure.message
    assert "raise KeyError" in t.failure.traceback
    assert t.commands == (FailOrchestration(failure=t.failure),)


def test_uncaught_activity_error_keeps_the_activity_failure_as_cause():
    app2 = App()

    @app2.orchestration
    async def plain(ctx, _):
        await ctx.call_activity("charge")

    s = Scenario(app2)
    s.start("plain")
    t = s.turn(101.0, activity_failed(1, "myapp.CardDeclined", "no funds"))
    assert t.failure.type == "perdure.errors.ActivityError"
    assert t.failure.cause.type == "myapp.CardDeclined"


def test_input_that_is_not_json_fails_at_the_call_naming_the_activity():
    t = Scenario(app).start("bad_input")
    assert t.status is OrchestrationStatus.FAILED
    assert t.failure.type == "perdure.errors.SerializationError"
    assert "input of activity 'charge'" in t.failure.message
    assert not of_type(t.new_events, ActivityScheduled)


def test_result_that_is_not_json_fails_the_instance_clearly():
    t = Scenario(app).start("bad_result")
    assert t.status is OrchestrationStatus.FAILED
    assert t.failure.type == "perdure.errors.SerializationError"
    assert "result of orchestration 'bad_result'" in t.failure.message


def test_duplicate_completion_is_recorded_as_discarded_never_applied_twice():
    s = Scenario(app)
    s.start("sequence", 2)
    s.turn(101.0, activity_completed(1, "a"))
    t = s.turn(102.0, activity_completed(1, "again"))
    assert discards(t.new_events) == [(DiscardReason.DUPLICATE, "ActivityCompleted")]
    assert t.new_events[-1].message["result"] == "again"
    assert len([e for e in s.history if isinstance(e, ActivityCompleted) and e.task_id == 1]) == 1
    assert t.commands == ()


def test_duplicate_in_the_same_turn_is_discarded():
    s = Scenario(app)
    s.start("sequence", 1)
    t = s.turn(101.0, activity_completed(1, "a"), activity_completed(1, "a"))
    assert kinds(t.new_events) == [
        "TurnStarted",
        "ActivityCompleted",
        "ExecutionCompleted",
        "MessageDiscarded",
    ]
    # after completion anything else is discarded as after-completion, not as duplicate
    assert discards(t.new_events) == [(DiscardReason.AFTER_COMPLETION, "ActivityCompleted")]


def test_completion_for_a_task_never_scheduled_is_discarded_as_unknown():
    s = Scenario(app)
    s.start("sequence", 2)
    t = s.turn(101.0, activity_completed(9, "x"), timer_fired(1))
    assert discards(t.new_events) == [
        (DiscardReason.UNKNOWN_TASK, "ActivityCompleted"),
        (DiscardReason.UNKNOWN_TASK, "TimerFired"),  # task 1 is an activity, not a timer
    ]
    assert t.status is OrchestrationStatus.RUNNING
    assert t.commands == ()


def test_messages_after_completion_in_the_same_turn_are_discarded():
    s = Scenario(app)
    s.start("one_activity", 1)
    t = s.turn(101.0, activity_completed(1, "ok"), event("late"), activity_completed(5))
    assert t.status is OrchestrationStatus.COMPLETED
    assert discards(t.new_events) == [
        (DiscardReason.AFTER_COMPLETION, "EventRaised"),
        (DiscardReason.AFTER_COMPLETION, "ActivityCompleted"),
    ]


def test_discard_records_in_past_history_are_skipped_on_replay():
    past = [
        turn(1.0),
        started("sequence", 2),
        activity_scheduled(1, "step", 0, at=1.0),
        turn(2.0),
        activity_completed(1, "a"),
        activity_scheduled(2, "step", 1, at=2.0),
        turn(3.0),
    ]
    s = Scenario(app)
    s.start("sequence", 2, at=1.0)
    s.turn(2.0, activity_completed(1, "a"))
    s.turn(3.0, activity_completed(1, "dup"))
    assert kinds(s.history) == [*kinds(past), "MessageDiscarded"]
    t = execute(app, "order-1", s.history, [turn(4.0), activity_completed(2, "b")])
    assert t.output == ["a", "b"]


def test_sub_orchestration_gets_a_generated_child_id_and_its_result():
    s = Scenario(app)
    t = s.start("with_child", None)
    assert t.commands == (
        StartSubOrchestration(task_id=1, name="ship", instance_id="order-1::sub::1", input={"to": "x"}),
    )
    assert t.waiting_on.children == (AwaitedChild(1, "ship", "order-1::sub::1", 100.0),)
    t = s.turn(101.0, child_completed(1, "shipped"))
    assert t.output == "shipped"


def test_sub_orchestration_with_an_explicit_id():
    t = Scenario(app).start("with_child", "ship-7")
    assert of_type(t.new_events, SubOrchestrationCreated)[0].instance_id == "ship-7"


def test_explicit_child_id_with_the_reserved_marker_is_rejected_at_the_call():
    t = Scenario(app).start("with_child", "x::sub::1")
    assert t.status is OrchestrationStatus.FAILED
    assert t.failure.type == InvalidInstanceIdError.__module__ + ".InvalidInstanceIdError"
    assert "reserved" in t.failure.message


def test_failed_child_raises_sub_orchestration_error():
    s = Scenario(app)
    s.start("child_fails")
    t = s.turn(101.0, child_failed(1, "RuntimeError", "no stock"))
    assert t.output == "sub-orchestration 'ship' (instance 'order-1::sub::1') failed: RuntimeError: no stock"


def test_parent_reference_from_execution_started_is_reported():
    parent = ParentRef("p-1", 2, 5)
    t = execute(app, "p-1::sub::2_5", [], [turn(1.0), started("one_activity", 1, parent=parent)])
    assert t.parent == parent


def test_unknown_orchestration_name_raises_registration_error():
    from perdure.errors import RegistrationError

    with pytest.raises(RegistrationError, match="nope"):
        execute(app, "x", [], [turn(1.0), started("nope")])
