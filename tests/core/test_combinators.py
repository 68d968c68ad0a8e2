"""when_all and when_any."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from perdure.core.commands import ScheduleActivity
from perdure.core.history import ActivityCompleted, MessageDiscarded
from perdure.core.registry import App
from perdure.core.status import OrchestrationStatus
from perdure.errors import ActivityError

from .builders import Scenario, activity_completed, activity_failed, event, kinds, timer_fired

app = App()


@app.orchestration
async def fan_out(ctx, n):
    return await ctx.when_all([ctx.call_activity("pack", i) for i in range(n)])


@app.orchestration
async def fan_out_catching(ctx, n):
    tasks = [ctx.call_activity("pack", i) for i in range(n)]
    try:
        await ctx.when_all(tasks)
    except ActivityError as err:
        return {"first": err.error_message, "done": [t.is_complete for t in tasks]}


@app.orchestration
async def race(ctx, _):
    cancel = ctx.wait_for_event("Cancel")
    deadline = ctx.create_timer(timedelta(seconds=300))
    winner = await ctx.when_any([cancel, deadline])
    return "cancelled" if winner is cancel else "deadline"


@app.orchestration
async def race_activities(ctx, _):
    fast = ctx.call_activity("fast")
    slow = ctx.call_activity("slow")
    winner = await ctx.when_any([fast, slow])
    first = winner.result
    await ctx.create_timer(timedelta(seconds=10))
    return [first, slow.is_complete, slow.result if slow.is_complete else None]


@app.orchestration
async def race_failing(ctx, _):
    a = ctx.call_activity("a")
    winner = await ctx.when_any([a, ctx.create_timer(timedelta(seconds=5))])
    try:
        return winner.result
    except ActivityError as err:
        return f"failed first: {err.error_message}"


@app.orchestration
async def empty(ctx, which):
    if which == "all":
        return await ctx.when_all([])
    return await ctx.when_any([])


@app.orchestration
async def not_tasks(ctx, _):
    return await ctx.when_all([ctx.call_activity("a"), 42])


def test_when_all_schedules_everything_at_once_and_returns_results_in_order():
    s = Scenario(app)
    t = s.start("fan_out", 3)
    assert [c.task_id for c in t.commands if isinstance(c, ScheduleActivity)] == [1, 2, 3]
    s.turn(101.0, activity_completed(3, "c"), activity_completed(1, "a"))
    t = s.turn(102.0, activity_completed(2, "b"))
    assert t.output == ["a", "b", "c"]


def test_when_all_fails_with_the_first_failure_in_completion_order():
    s = Scenario(app)
    s.start("fan_out_catching", 3)
    t = s.turn(
        101.0,
        activity_completed(1, "a"),
        activity_failed(3, message="third"),
        activity_failed(2, message="second"),
    )
    assert t.output == {"first": "third", "done": [True, False, True]}


def test_when_all_failure_leaves_the_others_running_and_their_completions_are_applied():
    app2 = App()

    @app2.orchestration
    async def keep_going(ctx, _):
        tasks = [ctx.call_activity("pack", i) for i in range(2)]
        with contextlib.suppress(ActivityError):
            await ctx.when_all(tasks)
        return await tasks[1]

    s = Scenario(app2)
    s.start("keep_going")
    t = s.turn(101.0, activity_failed(1))
    assert t.status is OrchestrationStatus.RUNNING
    t = s.turn(102.0, activity_completed(2, "late"))
    assert t.output == "late"


def test_when_any_returns_the_first_task_to_complete():
    s = Scenario(app)
    s.start("race")
    assert s.turn(101.0, event("Cancel")).output == "cancelled"
    s2 = Scenario(app)
    s2.start("race")
    assert s2.turn(400.0, timer_fired(1)).output == "deadline"


def test_when_any_losers_stay_open_and_their_completion_is_applied_not_discarded():
    s = Scenario(app)
    s.start("race_activities")
    t = s.turn(101.0, activity_completed(1, "fast"))
    assert [a.task_id for a in t.waiting_on.activities] == [2]  # the loser is still awaited
    t = s.turn(102.0, activity_completed(2, "slow"))
    assert kinds(t.new_events) == ["TurnStarted", "ActivityCompleted"]
    assert not any(isinstance(e, MessageDiscarded) for e in t.new_events)
    t = s.turn(111.0, timer_fired(3))
    assert t.output == ["fast", True, "slow"]


def test_when_any_winner_may_be_a_failure():
    s = Scenario(app)
    s.start("race_failing")
    assert s.turn(101.0, activity_failed(1, message="nope")).output == "failed first: nope"


def test_when_any_with_an_already_complete_task_completes_at_once():
    app2 = App()

    @app2.orchestration
    async def pre(ctx, _):
        first = ctx.wait_for_event("A")
        await ctx.create_timer(timedelta(seconds=1))
        winner = await ctx.when_any([ctx.call_activity("x"), first])
        return winner.result

    s = Scenario(app2)
    s.start("pre")
    s.turn(100.5, event("A", "a"))
    assert s.turn(101.0, timer_fired(1)).output == "a"


def test_when_all_of_nothing_is_an_empty_list_and_when_any_of_nothing_is_an_error():
    assert Scenario(app).start("empty", "all").output == []
    t = Scenario(app).start("empty", "any")
    assert t.status is OrchestrationStatus.FAILED
    assert "when_any needs at least one task" in t.failure.message


def test_combinators_reject_things_that_are_not_tasks():
    t = Scenario(app).start("not_tasks")
    assert t.status is OrchestrationStatus.FAILED
    assert "when_all takes tasks from the context" in t.failure.message


def test_completion_order_inside_one_turn_decides_when_any():
    s = Scenario(app)
    s.start("race_activities")
    t = s.turn(101.0, activity_completed(2, "slow"), activity_completed(1, "fast"))
    assert [e.task_id for e in t.new_events if isinstance(e, ActivityCompleted)] == [2, 1]
    t = s.turn(111.0, timer_fired(3))
    assert t.output == ["slow", True, "slow"]
