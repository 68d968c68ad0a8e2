"""Terminate, suspend/resume, continue-as-new and custom status."""

from __future__ import annotations

from datetime import timedelta

import pytest

from perdure.core.commands import (
    ContinueAsNew,
    ScheduleActivity,
    TerminateOrchestration,
    TerminateSubOrchestration,
)
from perdure.core.executor import OrchestrationExecutor, execute
from perdure.core.history import (
    ActivityScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    DiscardReason,
    EventRaised,
    MessageDiscarded,
    SubOrchestrationCreated,
)
from perdure.core.registry import App
from perdure.core.status import OrchestrationStatus

from .builders import (
    Scenario,
    activity_completed,
    child_completed,
    discards,
    event,
    kinds,
    of_type,
    resumed,
    started,
    suspended,
    terminated,
    timer_fired,
    turn,
)

app = App()
cleanup_ran: list[str] = []


@app.orchestration
async def parent(ctx, _):
    a = ctx.call_sub_orchestration("child", 1)
    b = ctx.call_sub_orchestration("child", 2, instance_id="explicit-b")
    c = ctx.call_sub_orchestration("child", 3)
    await ctx.when_any([a, b])
    try:
        await ctx.when_all([b, c, ctx.call_activity("work")])
    finally:
        cleanup_ran.append(ctx.instance_id)
        ctx.call_activity("never-recorded")


@app.orchestration
async def steps(ctx, _):
    first = await ctx.call_activity("one")
    second = await ctx.call_activity("two")
    return [first, second]


@app.orchestration
async def counter(ctx, n):
    got = await ctx.wait_for_event("Tick")
    if n < 2:
        ctx.continue_as_new(n + 1)
    return [n, got]


@app.orchestration
async def loop_with_child(ctx, n):
    await ctx.call_sub_orchestration("child", n)
    if n < 2:
        ctx.continue_as_new(n + 1)
    return n


@app.orchestration
async def swallowing(ctx, carry):
    try:
        ctx.continue_as_new("next", carry_over_events=carry)
    except Exception:
        return "swallowed"
    return "unreachable"


@app.orchestration
async def buffered_then_continue(ctx, carry):
    await ctx.create_timer(timedelta(seconds=1))
    ctx.continue_as_new("next", carry_over_events=carry)


@app.orchestration
async def bad_continue(ctx, _):
    ctx.continue_as_new({1, 2})


@app.orchestration
async def statuses(ctx, _):
    ctx.set_custom_status({"stage": "start"})
    ctx.set_custom_status({"stage": "start"})
    await ctx.call_activity("a")
    ctx.set_custom_status({"stage": "charged"})
    await ctx.call_activity("b")
    return "done"


def test_terminate_ends_the_instance_and_cascades_to_unfinished_children():
    cleanup_ran.clear()
    s = Scenario(app)
    s.start("parent")
    s.turn(101.0, child_completed(1, "a"))
    t = s.turn(102.0, terminated("operator says stop"))
    assert t.status is OrchestrationStatus.TERMINATED
    assert t.output is None and t.failure is None
    cascade = "parent instance 'order-1' was terminated: operator says stop"
    assert t.commands == (
        TerminateOrchestration(reason="operator says stop"),
        TerminateSubOrchestration(instance_id="explicit-b", task_id=2, reason=cascade),
        TerminateSubOrchestration(instance_id="order-1::sub::3", task_id=3, reason=cascade),
    )
    assert kinds(t.new_events) == ["TurnStarted", "ExecutionTerminated"]
    assert t.waiting_on.is_empty()
    assert cleanup_ran  # the coroutine was closed and its finally ran, recording nothing


def test_messages_after_terminate_in_the_same_turn_are_discarded():
    s = Scenario(app)
    s.start("steps")
    t = s.turn(101.0, terminated(), activity_completed(1))
    assert discards(t.new_events) == [(DiscardReason.AFTER_COMPLETION, "ActivityCompleted")]


def test_suspended_instance_records_messages_but_does_not_act_until_resumed():
    s = Scenario(app)
    s.start("steps")
    t = s.turn(101.0, suspended("maintenance"))
    assert t.status is OrchestrationStatus.SUSPENDED
    t = s.turn(102.0, activity_completed(1, "x"), activity_completed(1, "dup"))
    assert kinds(t.new_events) == ["TurnStarted", "ActivityCompleted", "MessageDiscarded"]
    assert discards(t.new_events) == [(DiscardReason.DUPLICATE, "ActivityCompleted")]
    assert t.status is OrchestrationStatus.SUSPENDED
    assert t.commands == ()
    assert t.waiting_on.activities == ()  # its completion is here, waiting for the resume
    t = s.turn(103.0, resumed())
    assert t.status is OrchestrationStatus.RUNNING
    assert t.commands == (ScheduleActivity(task_id=2, name="two"),)
    assert kinds(t.new_events) == ["TurnStarted", "ExecutionResumed", "ActivityScheduled"]
    assert of_type(t.new_events, ActivityScheduled)[0].timestamp == 103.0
    t = s.turn(104.0, activity_completed(2, "y"))
    assert t.output == ["x", "y"]


def test_terminate_works_while_suspended():
    s = Scenario(app)
    s.start("steps")
    s.turn(101.0, suspended(), activity_completed(1, "x"))
    t = s.turn(102.0, terminated("gone"))
    assert t.status is OrchestrationStatus.TERMINATED
    assert t.commands == (TerminateOrchestration(reason="gone"),)


def test_resume_without_suspend_changes_nothing():
    s = Scenario(app)
    s.start("steps")
    t = s.turn(101.0, resumed(), activity_completed(1, "x"))
    assert t.commands == (ScheduleActivity(task_id=2, name="two"),)


def test_continue_as_new_ends_the_execution_and_asks_for_the_next():
    s = Scenario(app)
    s.start("counter", 0)
    t = s.turn(101.0, event("Tick", "a"))
    assert t.status is OrchestrationStatus.RUNNING
    assert t.continued_as_new
    assert t.commands == (ContinueAsNew(input=1, carried=()),)
    assert kinds(t.new_events) == ["TurnStarted", "EventRaised", "ContinuedAsNew"]
    assert s.live.is_finished
    with pytest.raises(RuntimeError, match="has ended"):
        s.live.execute((), [turn(102.0)])
    t = s.continue_as_new(102.0)
    assert t.execution_id == 2
    assert t.waiting_on.events[0].name == "Tick"


def test_continue_as_new_carries_unconsumed_events_including_later_ones_in_the_turn():
    s = Scenario(app)
    s.start("counter", 0)
    t = s.turn(101.0, event("Tick", "a"), event("Tick", "b"), activity_completed(7), event("Other", "c"))
    carried = t.commands[-1].carried
    assert [(e.name, e.input) for e in carried] == [("Tick", "b"), ("Other", "c")]
    assert [(e.reason, e.message["kind"], e.detail) for e in of_type(t.new_events, MessageDiscarded)] == [
        (DiscardReason.AFTER_COMPLETION, "EventRaised", "carried over to execution 2"),
        (DiscardReason.AFTER_COMPLETION, "ActivityCompleted", "the execution had already ended"),
        (DiscardReason.AFTER_COMPLETION, "EventRaised", "carried over to execution 2"),
    ]
    t = s.continue_as_new(102.0)  # execution 2 receives the carried events first
    assert t.continued_as_new  # n=1 consumed "b" and continued again, carrying "Other"
    assert [(e.name, e.input) for e in t.commands[-1].carried] == [("Other", "c")]
    s.continue_as_new(103.0)
    t = s.turn(104.0, event("Tick", "z"))
    assert t.output == [2, "z"]


def test_buffered_events_are_carried_and_dropped_without_carry_over():
    s = Scenario(app)
    s.start("buffered_then_continue", True)
    s.turn(100.5, event("E", 1))
    t = s.turn(101.0, timer_fired(1), event("E", 2))
    assert [e.input for e in t.commands[-1].carried] == [1, 2]

    s = Scenario(app)
    s.start("buffered_then_continue", False)
    s.turn(100.5, event("E", 1))
    t = s.turn(101.0, timer_fired(1), event("E", 2))
    assert t.commands[-1].carried == ()
    assert of_type(t.new_events, MessageDiscarded)[0].detail == "the execution had already ended"


@pytest.mark.parametrize("carry", [True, False])
def test_except_exception_cannot_swallow_continue_as_new(carry):
    t = Scenario(app).start("swallowing", carry)
    assert t.continued_as_new
    assert t.commands == (ContinueAsNew(input="next"),)
    assert of_type(t.new_events, ContinuedAsNew)[0].input == "next"


def test_continue_as_new_input_must_be_json():
    t = Scenario(app).start("bad_continue")
    assert t.status is OrchestrationStatus.FAILED
    assert "continue_as_new input is not JSON-serialisable" in t.failure.message


def test_generated_child_ids_differ_across_executions():
    s = Scenario(app)
    s.start("loop_with_child", 0)
    s.turn(101.0, child_completed(1))
    s.continue_as_new(102.0)
    s.turn(103.0, child_completed(1))
    s.continue_as_new(104.0)
    ids = [of_type(h, SubOrchestrationCreated)[0].instance_id for h in [*s.executions, s.history]]
    assert ids == ["order-1::sub::1", "order-1::sub::2_1", "order-1::sub::3_1"]
    assert s.turn(105.0, child_completed(1)).output == 2


def test_custom_status_is_recorded_only_when_it_changes_and_reported_every_turn():
    s = Scenario(app)
    t = s.start("statuses")
    assert t.custom_status == {"stage": "start"}
    assert len(of_type(t.new_events, CustomStatusSet)) == 1
    t = s.turn(101.0, event("noise"))
    assert t.custom_status == {"stage": "start"}  # carried even when unchanged
    assert not of_type(t.new_events, CustomStatusSet)
    t = s.turn(102.0, activity_completed(1))
    assert t.custom_status == {"stage": "charged"}
    assert of_type(t.new_events, CustomStatusSet) == [CustomStatusSet(timestamp=102.0, status={"stage": "charged"})]
    t = execute(app, "order-1", s.history, [turn(103.0)])
    assert t.custom_status == {"stage": "charged"}


def test_custom_status_must_be_json():
    app2 = App()

    @app2.orchestration
    async def bad(ctx, _):
        ctx.set_custom_status(object())

    assert "custom status is not JSON-serialisable" in Scenario(app2).start("bad").failure.message


def test_a_live_executor_rejects_past_events_after_its_first_turn():
    ex = OrchestrationExecutor(app, "i")
    ex.execute((), [turn(1.0), started("steps")])
    with pytest.raises(ValueError, match=r"pass past=\(\)"):
        ex.execute([turn(1.0)], [turn(2.0)])


def test_messages_to_an_ended_history_are_refused():
    s = Scenario(app)
    s.start("steps")
    s.turn(101.0, activity_completed(1))
    s.turn(102.0, activity_completed(2))
    with pytest.raises(ValueError, match="already ended"):
        execute(app, "order-1", s.history, [turn(103.0), EventRaised(name="late")])


def test_status_is_pending_before_the_execution_started():
    t = execute(app, "i", [], [turn(1.0), event("early")])
    assert t.status is OrchestrationStatus.PENDING
