"""Property tests: random orchestration programs under random delivery.

A small interpreter orchestration runs random programs (sequences, fan-outs, timers,
events with and without timeouts, children, retries, when_any races, continue-as-new).
A simulated world completes whatever the program scheduled, in random order, with random
failures, duplicates, stray completions, external events, suspend/resume and terminate,
cut into random turns. Checked on every turn: the live executor and a full replay agree
(:class:`Scenario`), no task ever gets a second completion event, and a running instance
always says what it waits on. Then the same messages, one turn each, give the same result.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perdure.core.commands import (
    CreateTimer,
    ScheduleActivity,
    StartSubOrchestration,
)
from perdure.core.executor import OrchestrationExecutor
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    EventRaised,
    ExecutionStarted,
    ExecutionSuspended,
    HistoryEvent,
    MessageDiscarded,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    TimerFired,
    TurnStarted,
)
from perdure.core.registry import App
from perdure.core.retry import RetryPolicy
from perdure.core.status import OrchestrationStatus
from perdure.errors import OrchestrationError

from .builders import (
    COMPLETION_TYPES,
    Scenario,
    failure,
    resumed,
    started,
    suspended,
    terminated,
    turn,
)

app = App()


@app.orchestration
async def program(ctx, spec):
    out: list[Any] = []
    for step in spec["steps"]:
        try:
            out.append(await _run_step(ctx, step))
        except OrchestrationError as err:
            out.append(f"{type(err).__name__}: {err.error_message}")
    if spec["again"]:
        ctx.continue_as_new({"steps": spec["steps"], "again": spec["again"] - 1})
    return out


async def _run_step(ctx, step: list[Any]) -> Any:
    kind = step[0]
    if kind == "act":
        return await ctx.call_activity(step[1], step[1])
    if kind == "retry":
        policy = RetryPolicy(max_attempts=step[1], first_delay=timedelta(seconds=1))
        return await ctx.call_activity("flaky", None, retry=policy)
    if kind == "fan":
        return await ctx.when_all([ctx.call_activity("part", i) for i in range(step[1])])
    if kind == "timer":
        return await ctx.create_timer(timedelta(seconds=step[1]))
    if kind == "event":
        timeout = timedelta(seconds=step[2]) if step[2] else None
        return await ctx.wait_for_event(step[1], timeout=timeout)
    if kind == "child":
        return await ctx.call_sub_orchestration("kid", step[1])
    if kind == "race":
        loser = ctx.call_activity("slow")
        winner = await ctx.when_any([loser, ctx.create_timer(timedelta(seconds=step[1]))])
        return "activity" if winner is loser else "timer"
    if kind == "race_event":
        wait = ctx.wait_for_event(step[1])
        winner = await ctx.when_any([wait, ctx.call_activity("poll")])
        return winner.result
    if kind == "status":
        ctx.set_custom_status(step[1])
        return None
    if kind == "rand":
        return [str(ctx.new_uuid()), ctx.random()]
    raise ValueError(f"step {kind} fails the instance")


steps = st.one_of(
    st.tuples(st.just("act"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("retry"), st.integers(1, 3)),
    st.tuples(st.just("fan"), st.integers(0, 3)),
    st.tuples(st.just("timer"), st.integers(1, 30)),
    st.tuples(st.just("event"), st.sampled_from(["x", "y"]), st.sampled_from([0, 5])),
    st.tuples(st.just("child"), st.integers(0, 9)),
    st.tuples(st.just("race"), st.integers(1, 9)),
    st.tuples(st.just("race_event"), st.sampled_from(["x", "y"])),
    st.tuples(st.just("status"), st.sampled_from(["s1", "s2"])),
    st.tuples(st.just("rand")),
    st.tuples(st.just("boom")),
).map(list)
programs = st.fixed_dictionaries({"steps": st.lists(steps, max_size=6), "again": st.integers(0, 1)})

# What the world can do in a turn; repetition weights the draw.
ACTIONS = ["complete"] * 8 + ["event"] * 2 + ["duplicate", "stray", "suspend", "resume", "terminate"]


class World:
    """Completes what the orchestration scheduled, in an order drawn by hypothesis."""

    def __init__(self, data: st.DataObject) -> None:
        self.draw = data.draw
        self.pending: list[tuple[str, int]] = []
        self.delivered: list[HistoryEvent] = []

    def learn(self, commands) -> None:
        for c in commands:
            if isinstance(c, ScheduleActivity):
                self.pending.append(("activity", c.task_id))
            elif isinstance(c, CreateTimer):
                self.pending.append(("timer", c.task_id))
            elif isinstance(c, StartSubOrchestration):
                self.pending.append(("child", c.task_id))

    def forget(self) -> None:
        self.pending.clear()
        self.delivered.clear()

    def messages(self) -> list[HistoryEvent]:
        out = []
        for _ in range(self.draw(st.integers(1, 3))):
            action = self.draw(st.sampled_from(ACTIONS))
            message = self._make(action)
            if message is not None:
                out.append(message)
        return out

    def _make(self, action: str) -> HistoryEvent | None:
        if action == "complete" and self.pending:
            kind, task = self.pending.pop(self.draw(st.integers(0, len(self.pending) - 1)))
            ok = kind == "timer" or self.draw(st.integers(0, 3)) > 0
            message: HistoryEvent
            if kind == "timer":
                message = TimerFired(task_id=task)
            elif kind == "activity":
                message = (
                    ActivityCompleted(task_id=task, result=task)
                    if ok
                    else ActivityFailed(task_id=task, failure=failure())
                )
            else:
                message = (
                    SubOrchestrationCompleted(task_id=task, result=-task)
                    if ok
                    else SubOrchestrationFailed(task_id=task, failure=failure())
                )
            self.delivered.append(message)
            return message
        if action == "event":
            return EventRaised(name=self.draw(st.sampled_from(["x", "y"])), input=self.draw(st.integers(0, 9)))
        if action == "duplicate" and self.delivered:
            return self.draw(st.sampled_from(self.delivered))
        if action == "stray":
            return ActivityCompleted(task_id=999, result="stray")
        if action == "suspend":
            return suspended()
        if action == "resume":
            return resumed()
        if action == "terminate" and self.draw(st.integers(0, 9)) == 0:
            return terminated("chaos")
        return None


def _check_turn(s: Scenario) -> None:
    counts = Counter(e.task_id for e in s.history if isinstance(e, COMPLETION_TYPES))
    assert all(n == 1 for n in counts.values()), f"second completion event: {counts}"
    t = s.last
    if t.status is OrchestrationStatus.RUNNING and not t.continued_as_new:
        assert not t.waiting_on.is_empty(), "a running instance must say what it waits on"


def _signature(history: list[HistoryEvent]) -> list[tuple[Any, ...]]:
    """History without what depends on turn boundaries (turn times, discards)."""
    return [
        (
            type(e).__name__,
            getattr(e, "task_id", None),
            getattr(e, "name", None),
            getattr(e, "input", None),
        )
        for e in history
        if not isinstance(e, (TurnStarted, MessageDiscarded))
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=programs, data=st.data())
def test_live_equals_replay_under_random_delivery_and_turn_boundaries(spec, data):
    s = Scenario(app, "prop-1")
    world = World(data)
    at = 100.0
    first_execution: list[list[HistoryEvent]] = [[started("program", spec)]]
    world.learn(s.start("program", spec, at=at).commands)
    _check_turn(s)
    for _ in range(40):
        if s.live.is_finished:
            if not s.last.continued_as_new:
                break
            at += 1
            world.forget()
            world.learn(s.continue_as_new(at).commands)
            _check_turn(s)
            continue
        messages = world.messages()
        at += data.draw(st.integers(0, 20))
        if not s.executions:
            first_execution.append(messages)
        world.learn(s.turn(at, *messages).commands)
        _check_turn(s)

    # The same messages, one per turn, lead the first execution to the same place.
    original = s.executions[0] if s.executions else s.history
    one_by_one = OrchestrationExecutor(app, "prop-1")
    history: list[HistoryEvent] = []
    t = None
    for i, message in enumerate(m for batch in first_execution for m in batch):
        if one_by_one.is_finished:
            break
        t = one_by_one.execute((), [turn(100.0 + i), message])
        history.extend(t.new_events)
    assert _signature(history) == _signature(original)
    assert t is not None


@settings(max_examples=50, deadline=None)
@given(spec=programs, data=st.data())
def test_a_duplicated_completion_never_adds_a_second_completion_event(spec, data):
    s = Scenario(app, "dup-1")
    world = World(data)
    world.learn(s.start("program", {**spec, "again": 0}).commands)
    at = 100.0
    while not s.live.is_finished and world.pending and at < 200:
        at += 1
        kind, task = world.pending.pop(0)
        message = {
            "timer": TimerFired(task_id=task),
            "activity": ActivityCompleted(task_id=task, result=1),
        }.get(kind, SubOrchestrationCompleted(task_id=task, result=2))
        world.learn(s.turn(at, message, message).commands)
        _check_turn(s)
        if not s.live.is_finished:
            t = s.turn(at + 0.5, message)
            assert [(d.reason, d.message) for d in t.new_events if isinstance(d, MessageDiscarded)] == [
                ("duplicate", _encoded(message))
            ]


def _encoded(event: HistoryEvent) -> dict[str, Any]:
    from perdure.core.history import encode_event

    return encode_event(event)


def test_signature_ignores_turn_boundaries_only():
    h = [turn(1.0), ExecutionStarted(name="p"), ExecutionSuspended()]
    assert _signature(h) == [
        ("ExecutionStarted", None, "p", None),
        ("ExecutionSuspended", None, None, None),
    ]
