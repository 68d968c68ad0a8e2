"""Rewind and reset as history: the turn a rewind undoes no longer counts on replay, the plan
names what to queue again and what the rest awaits, and a reset's copied history replays in
its new run with the values and child ids it had."""

from __future__ import annotations

import pytest

from perdure.core.executor import OrchestrationExecutor, execute
from perdure.core.history import ExecutionRewound, ExecutionStarted
from perdure.core.registry import App
from perdure.core.rewind import effective_history, plan_reset, plan_rewind, turn_numbers
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceStateError

from .builders import (
    activity_completed,
    activity_failed,
    event,
    kinds,
    started,
    turn,
)

app = App()


@app.orchestration(name="saga")
async def saga(ctx, x):
    a = await ctx.call_activity("reserve", x)
    b = await ctx.call_activity("charge", a)
    return [a, b, str(ctx.new_uuid())]


@app.orchestration(name="fan")
async def fan(ctx, x):
    first = await ctx.call_sub_orchestration("saga", 1)
    await ctx.wait_for_event("go")
    second = await ctx.call_sub_orchestration("saga", 2)
    return [first, second]


def _live(name, *turns):
    """Run ``turns`` (lists of messages) live, one execute per turn; the whole history."""
    history: list = []
    for n, messages in enumerate(turns, start=1):
        t = execute(app, "o-1", history, [turn(float(n)), *messages])
        history += t.new_events
    return history, t


def test_effective_history_drops_what_a_rewind_undid():
    events = [turn(1), started("saga"), turn(2), event("x"), turn(3), event("y")]
    record = ExecutionRewound(undone_from=4)
    assert effective_history([*events, record, turn(4)]) == [*enumerate(events[:4]), (7, turn(4))]
    assert turn_numbers([*events, record, turn(4)]) == [1, 1, 2, 2, 3, 3, 3, 4]


def test_a_failed_activity_is_scheduled_again_and_the_rest_is_kept():
    history, t = _live(
        "saga", [started("saga", 1)], [activity_completed(1, "r")], [activity_failed(2, message="card declined")]
    )
    assert t.status is OrchestrationStatus.FAILED
    plan = plan_rewind(history, reason="card fixed", now=9.0)
    failed_turn = max(i for i, e in enumerate(history) if type(e).__name__ == "TurnStarted")
    assert plan.record == ExecutionRewound(
        timestamp=9.0, undone_from=failed_turn, failure=t.failure, reason="card fixed"
    )
    assert plan.requeue == ()
    assert [(a.task_id, a.name, a.input) for a in plan.work.activities] == [(2, "charge", "r")]
    assert plan.status is OrchestrationStatus.RUNNING
    assert [a.name for a in plan.work.waiting_on().activities] == ["charge"]

    # The rewound history replays (the failed turn skipped) and takes the retried outcome.
    t = execute(app, "o-1", [*history, plan.record], [turn(10.0), activity_completed(2, "paid")])
    assert t.status is OrchestrationStatus.COMPLETED and t.output[:2] == ["r", "paid"]


def test_a_nondeterminism_failure_is_rewound_and_the_turns_messages_come_again():
    async def broken(ctx, x):
        await ctx.call_activity("refund", x)  # a bad deploy: the code no longer matches

    bad = App()
    bad.orchestration(name="saga")(broken)
    history, _ = _live("saga", [started("saga", 1)])
    t = execute(bad, "o-1", history, [turn(2.0), activity_completed(1, "r"), event("late")])
    assert t.status is OrchestrationStatus.FAILED and "nondeterministic" in t.failure.message
    history += t.new_events
    assert kinds(t.new_events)[-2:] == ["MessageDiscarded", "MessageDiscarded"]  # after the failure

    plan = plan_rewind(history)
    assert kinds(plan.requeue) == ["ActivityCompleted", "EventRaised"]  # in the order they came
    assert plan.work.activities == ()  # its outcome is among them
    t = execute(app, "o-1", [*history, plan.record], [turn(3.0), *plan.requeue])
    assert t.status is OrchestrationStatus.RUNNING
    assert kinds(t.new_events)[:3] == ["TurnStarted", "ActivityCompleted", "ActivityScheduled"]


def test_positions_after_a_rewind_are_those_of_the_stored_history():
    history, _ = _live("saga", [started("saga", 1)], [activity_failed(1)])
    plan = plan_rewind(history)
    stored = [*history, plan.record]

    async def changed(ctx, x):
        await ctx.call_activity("other", x)

    other = App()
    other.orchestration(name="saga")(changed)
    executor = OrchestrationExecutor(other, "o-1")
    executor.execute(stored, [turn(5.0), activity_completed(1)])
    assert executor.divergence.position == 2  # ActivityScheduled 'reserve', before the undone turn
    assert executor.divergence.recorded == "ActivityScheduled 'reserve' (task 1)"


def test_only_a_failed_execution_that_failed_in_a_turn_can_be_rewound():
    history, _ = _live("saga", [started("saga", 1)])
    with pytest.raises(InstanceStateError, match="its history does not end in a failure"):
        plan_rewind(history)


def _reset(history, to_turn, **kw):
    ids = {"instance_id": "o-1", "run_id": "run-1", "execution_id": 1, "new_run_id": "run-2", "new_execution_id": 4}
    return plan_reset(history, to_turn, **{**ids, **kw})


def test_a_reset_copies_the_history_to_a_turn_into_a_new_run_that_replays_as_it_was():
    history, _ = _live(
        "fan",
        [started("fan", 0, run_id="run-1")],
        [event("go")],  # the first child is still running: nothing but the event
    )
    assert turn_numbers(history)[-1] == 2
    plan = _reset(history, 1, reason="try again")
    copied = plan.history
    start = next(e for e in copied if isinstance(e, ExecutionStarted))
    assert (start.run_id, start.execution_id) == ("run-2", 4)
    assert (start.origin.kind, start.origin.run_id, start.origin.turn, start.origin.seed_execution) == (
        "reset",
        "run-1",
        1,
        1,
    )
    assert [c.instance_id for c in plan.work.children] == ["o-1::sub::run-1.1.1"]
    assert kinds(plan.requeue) == ["EventRaised"]  # the event of turn 2 comes again
    assert plan.status is OrchestrationStatus.RUNNING
    # The copied history replays in the new run: the child keeps its recorded id, and a
    # child started from here on gets an id of the new run.
    t = execute(app, "o-1", copied, [turn(7.0), *plan.requeue])
    assert t.status is OrchestrationStatus.RUNNING and t.replayed_events == len(copied)


def test_a_reset_run_keeps_the_deterministic_values_of_the_turns_it_copies():
    history, done = _live("saga", [started("saga", 1)], [activity_completed(1, "r")], [activity_completed(2, "p")])
    plan = _reset(history, 2)
    t = execute(app, "o-1", plan.history, [turn(9.0), activity_completed(2, "p")])
    assert t.output == done.output  # the same uuid: seeded by the execution it continues


def test_a_reset_refuses_turns_it_cannot_go_back_to():
    history, _ = _live("saga", [started("saga", 1)], [activity_completed(1, "r")], [activity_completed(2, "p")])
    with pytest.raises(InstanceStateError, match="its history has turns 1 to 3, not 4"):
        _reset(history, 4)
    with pytest.raises(InstanceStateError, match="the execution had ended by turn 3"):
        _reset(history, 3)
    failed, _ = _live("saga", [started("saga", 1)], [activity_failed(1)])
    plan = plan_rewind(failed)
    rewound = [*failed, plan.record, turn(5.0), activity_completed(1, "r")]
    with pytest.raises(InstanceStateError, match="turn 2 was undone by a rewind"):
        _reset(rewound, 2)
    assert kinds(_reset(rewound, 3).history) == [
        "TurnStarted",
        "ExecutionStarted",
        "ActivityScheduled",
        "TurnStarted",
        "ActivityCompleted",
    ]
