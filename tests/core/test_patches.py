"""Patches: ``ctx.patched`` lets changed code run next to instances started under the old
code; ``ctx.deprecate_patch`` retires the old path; markers are checked on replay."""

from __future__ import annotations

import pytest

from perdure.core.executor import execute
from perdure.core.history import PatchMarker
from perdure.core.registry import App
from perdure.core.status import OrchestrationStatus
from perdure.errors import InvalidInputError

from .builders import activity_completed, activity_scheduled, completed, kinds, started, turn


def _app(fn):
    app = App()
    app.orchestration(name="saga")(fn)
    return app


async def v1(ctx, x):
    r = await ctx.call_activity("reserve", x)
    return await ctx.call_activity("charge", r)


async def v2(ctx, x):
    r = await ctx.call_activity("reserve", x)
    if ctx.patched("receipt"):
        await ctx.call_activity("receipt", r)
    return await ctx.call_activity("charge", r)


async def v3(ctx, x):
    r = await ctx.call_activity("reserve", x)
    ctx.deprecate_patch("receipt")
    await ctx.call_activity("receipt", r)
    return await ctx.call_activity("charge", r)


async def v4(ctx, x):
    r = await ctx.call_activity("reserve", x)
    await ctx.call_activity("receipt", r)
    return await ctx.call_activity("charge", r)


def _run_live(fn, results):
    """Run an instance live to completion, one activity result per turn; its whole history."""
    app, history = _app(fn), []
    t = execute(app, "o-1", [], [turn(1.0), started("saga", 7)])
    history += t.new_events
    for n, result in enumerate(results, start=2):
        task = max(e.task_id for e in history if hasattr(e, "task_id"))
        t = execute(app, "o-1", history, [turn(float(n)), activity_completed(task, result)])
        history += t.new_events
    assert t.status is OrchestrationStatus.COMPLETED, t.failure
    return history


# Recorded by v1: reserve completed, charge in flight.
OLD = [
    turn(1.0),
    started("saga", 7),
    activity_scheduled(1, "reserve", 7, at=1.0),
    turn(2.0),
    activity_completed(1, "r"),
    activity_scheduled(2, "charge", "r", at=2.0),
]


def test_an_instance_started_before_the_patch_keeps_the_old_path():
    t = execute(_app(v2), "o-1", OLD, [turn(3.0), activity_completed(2, "paid")])
    assert t.status is OrchestrationStatus.COMPLETED
    assert t.output == "paid"
    assert not any(isinstance(e, PatchMarker) for e in t.new_events)


def test_a_new_instance_records_the_marker_and_takes_the_new_path():
    history = _run_live(v2, ["r", None, "paid"])
    names = [e.name for e in history if type(e).__name__ == "ActivityScheduled"]
    assert names == ["reserve", "receipt", "charge"]
    assert PatchMarker(timestamp=2.0, patch_id="receipt") in history
    # and its history replays under the same code
    t = execute(_app(v2), "o-1", history[:-2], [turn(9.0), activity_completed(3, "paid")])
    assert (t.status, t.output) == (OrchestrationStatus.COMPLETED, "paid")


def test_removing_the_patch_while_an_instance_has_its_marker_is_a_nondeterminism_error():
    history = _run_live(v2, ["r", None, "paid"])
    t = execute(_app(v1), "o-1", history[:-2], [turn(9.0), activity_completed(3, "paid")])
    assert t.status is OrchestrationStatus.FAILED
    message = t.failure.message
    assert "the history recorded PatchMarker 'receipt' (the orchestrator called ctx.patched('receipt'))" in message
    assert "but the code now produced ActivityScheduled 'charge'" in message


def test_a_deprecated_patch_replays_marked_histories_and_records_a_deprecated_marker():
    marked = _run_live(v2, ["r", None, "paid"])
    t = execute(_app(v3), "o-1", marked[:-2], [turn(9.0), activity_completed(3, "paid")])
    assert (t.status, t.output) == (OrchestrationStatus.COMPLETED, "paid")

    fresh = _run_live(v3, ["r", None, "paid"])
    assert PatchMarker(timestamp=2.0, patch_id="receipt", deprecated=True) in fresh


def test_once_deprecated_the_call_can_go_but_only_for_deprecated_markers():
    deprecated = _run_live(v3, ["r", None, "paid"])
    t = execute(_app(v4), "o-1", deprecated[:-2], [turn(9.0), activity_completed(3, "paid")])
    assert (t.status, t.output) == (OrchestrationStatus.COMPLETED, "paid")

    marked = _run_live(v2, ["r", None, "paid"])  # started under patched(): still needs the call
    t = execute(_app(v4), "o-1", marked[:-2], [turn(9.0), activity_completed(3, "paid")])
    assert t.status is OrchestrationStatus.FAILED
    assert "PatchMarker 'receipt'" in t.failure.message


def test_the_first_answer_for_a_patch_holds_for_the_whole_execution():
    async def twice(ctx, x):
        first = ctx.patched("p")
        await ctx.call_activity("a", first)
        return [first, ctx.patched("p")]

    old = [turn(1.0), started("saga"), activity_scheduled(1, "a", False, at=1.0)]
    t = execute(_app(twice), "o-1", old, [turn(2.0), activity_completed(1)])
    assert t.output == [False, False]  # replayed without the marker, then live: still False

    t = execute(_app(twice), "o-1", [], [turn(1.0), started("saga")])
    assert kinds(t.new_events) == ["TurnStarted", "ExecutionStarted", "PatchMarker", "ActivityScheduled"]
    t = execute(_app(twice), "o-1", t.new_events, [turn(2.0), activity_completed(1)])
    assert t.output == [True, True]
    assert completed([True, True], at=2.0) in t.new_events


@pytest.mark.parametrize("bad", ["", "  ", None, 3])
def test_a_patch_id_must_be_a_non_empty_string(bad):
    async def saga(ctx, x):
        ctx.patched(bad)

    t = execute(_app(saga), "o-1", [], [turn(1.0), started("saga")])
    assert t.status is OrchestrationStatus.FAILED
    assert t.failure.type == InvalidInputError.__module__ + ".InvalidInputError"
    assert "a patch id must be a non-empty string" in t.failure.message
