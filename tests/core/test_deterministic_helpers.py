"""ctx.now, new_uuid, random, is_replaying and the replay-safe logger."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from perdure.core.executor import OrchestrationExecutor, execute
from perdure.core.registry import App

from .builders import Scenario, activity_completed, started, timer_fired, turn

app = App()


@app.orchestration
async def draws(ctx, _):
    first = [str(ctx.new_uuid()), ctx.random()]
    await ctx.create_timer(timedelta(seconds=1))
    second = [str(ctx.new_uuid()), ctx.random()]
    return [first, second]


@app.orchestration
async def loud(ctx, _):
    ctx.logger.info("before activity (replaying=%s)", ctx.is_replaying)
    await ctx.call_activity("a")
    ctx.logger.warning("after activity (replaying=%s)", ctx.is_replaying)
    await ctx.call_activity("b")
    return "done"


@app.orchestration
async def replay_flags(ctx, _):
    flags = [ctx.is_replaying]
    await ctx.create_timer(timedelta(seconds=1))
    flags.append(ctx.is_replaying)
    await ctx.create_timer(timedelta(seconds=1))
    flags.append(ctx.is_replaying)
    return flags


def _run_draws(instance_id: str, execution_id: int = 1):
    ex = OrchestrationExecutor(app, instance_id)
    ex.execute((), [turn(1.0), started("draws", execution_id=execution_id)])
    return ex.execute((), [turn(2.0), timer_fired(1)]).output


def test_uuid_and_random_are_the_same_live_and_on_replay():
    s = Scenario(app)  # the scenario asserts live == full replay at each turn
    s.start("draws")
    output = s.turn(101.0, timer_fired(1)).output
    (u1, r1), (u2, r2) = output
    assert uuid.UUID(u1) != uuid.UUID(u2)
    assert 0.0 <= r1 < 1.0 and 0.0 <= r2 < 1.0 and r1 != r2
    assert output == _run_draws("order-1")


def test_uuid_and_random_differ_between_instances_and_executions():
    a, b, c = _run_draws("i-1"), _run_draws("i-2"), _run_draws("i-1", execution_id=2)
    assert a[0][0] != b[0][0] and a[0][0] != c[0][0]
    assert a[0][1] != b[0][1] and a[0][1] != c[0][1]


def test_random_is_roughly_uniform():
    app2 = App()

    @app2.orchestration
    async def many(ctx, n):
        return [ctx.random() for _ in range(n)]

    values = execute(app2, "uniform", [], [turn(1.0), started("many", 4000)]).output
    assert 0.45 < sum(values) / len(values) < 0.55
    assert min(values) >= 0.0 and max(values) < 1.0


def test_is_replaying_is_true_only_while_past_events_are_processed():
    s = Scenario(app)
    s.start("replay_flags")
    s.turn(101.0, timer_fired(1))
    t = execute(app, "x", s.history, [turn(102.0), timer_fired(2)])
    assert t.output == [True, True, False]


def test_logger_is_silent_while_replaying(caplog):
    caplog.set_level(logging.INFO, logger="perdure.orchestration")
    ex = OrchestrationExecutor(app, "log-1")
    first = ex.execute((), [turn(1.0), started("loud")])
    assert [r.getMessage() for r in caplog.records] == ["before activity (replaying=False)"]
    assert caplog.records[0].instance_id == "log-1"
    caplog.clear()
    execute(app, "log-1", first.new_events, [turn(2.0), activity_completed(1)])
    # the first message is not logged again during replay; the new one is logged once
    assert [r.getMessage() for r in caplog.records] == ["after activity (replaying=False)"]
    assert caplog.records[0].execution_id == 1
