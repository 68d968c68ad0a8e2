"""The timeline is built from a history: a bar per activity attempt, timer, retry delay,
child and open wait, coloured by outcome, and drawn as SVG."""

from __future__ import annotations

from datetime import UTC, datetime

from perdure.client import InstanceState
from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    EventRaised,
    ExecutionStarted,
    ExecutionTerminated,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
    TimerFired,
    TurnStarted,
)
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import AwaitedEvent, AwaitedTimer, WaitingOn
from perdure.web.timeline import build_timeline, render_svg

T0 = 1_800_000_000.0
BOOM = Failure(type="ConnectionError", message="refused", traceback=None)


def state(status: OrchestrationStatus, waiting_on: WaitingOn | None = None) -> InstanceState:
    return InstanceState(
        instance_id="order-<7>",
        name="order_saga",
        status=status,
        input=None,
        output=None,
        failure=None,
        custom_status=None,
        created_at=datetime.fromtimestamp(T0, UTC),
        last_updated_at=datetime.fromtimestamp(T0 + 10, UTC),
        execution_id=1,
        history_event_count=0,
        parent_instance_id=None,
        waiting_on=waiting_on or WaitingOn(),
    )


HISTORY = [
    TurnStarted(timestamp=T0),
    ExecutionStarted(timestamp=T0, name="order_saga"),
    ActivityScheduled(timestamp=T0, task_id=1, name="charge", attempt=1, max_attempts=3),
    TurnStarted(timestamp=T0 + 1),
    ActivityFailed(timestamp=T0 + 1, task_id=1, failure=BOOM),
    TimerCreated(timestamp=T0 + 1, task_id=2, fire_at=T0 + 3),  # the retry delay
    TurnStarted(timestamp=T0 + 3),
    TimerFired(timestamp=T0 + 3, task_id=2, fire_at=T0 + 3),
    ActivityScheduled(timestamp=T0 + 3, task_id=3, name="charge", attempt=2, max_attempts=3),
    TurnStarted(timestamp=T0 + 4),
    ActivityCompleted(timestamp=T0 + 4, task_id=3, result="ok"),
    SubOrchestrationCreated(timestamp=T0 + 4, task_id=4, name="ship", instance_id="order-7::sub::4"),
    TimerCreated(timestamp=T0 + 4, task_id=5, fire_at=T0 + 3600),  # the approval's timeout
    TurnStarted(timestamp=T0 + 6),
    SubOrchestrationFailed(timestamp=T0 + 6, task_id=4, failure=BOOM),
    EventRaised(timestamp=T0 + 7, name="Nudge"),
]
WAITING = WaitingOn(
    timers=(AwaitedTimer(5, T0 + 3600, "timeout"),), events=(AwaitedEvent("Approved", T0 + 4, T0 + 3600),)
)


def test_a_running_execution_has_a_bar_per_attempt_retry_child_and_open_wait() -> None:
    timeline = build_timeline(state(OrchestrationStatus.RUNNING, WAITING), HISTORY, now=T0 + 10)
    bars = [(s.kind, s.label, s.start - T0, None if s.end is None else s.end - T0, s.outcome) for s in timeline.spans]
    assert bars == [
        ("activity", "charge #1", 0, 1, "failed"),
        ("retry", "retry charge", 1, 3, "fired"),
        ("activity", "charge #2", 3, 4, "completed"),
        ("child", "child ship", 4, 6, "failed"),
        ("event", "event Approved", 4, None, "waiting"),  # its timeout timer is its deadline
    ]
    assert timeline.spans[3].child_id == "order-7::sub::4"
    assert "ConnectionError: refused" in timeline.spans[0].detail and "attempt 1 of 3" in timeline.spans[0].detail
    assert [(m.label, m.at - T0) for m in timeline.marks] == [("event Nudge arrived", 7)]
    assert (timeline.start, timeline.end) == (T0, T0 + 10)


def test_what_was_open_when_the_execution_ended_is_drawn_as_abandoned() -> None:
    history = [*HISTORY, TurnStarted(timestamp=T0 + 8), ExecutionTerminated(timestamp=T0 + 8, reason="dup")]
    timeline = build_timeline(state(OrchestrationStatus.TERMINATED), history, now=T0 + 100)
    assert timeline.end == T0 + 8  # the end of the execution, not now
    timer = next(s for s in timeline.spans if s.kind == "timer")
    assert (timer.label, timer.end, timer.outcome) == ("timer 59.9 min", T0 + 8, "cancelled")
    assert timeline.open_spans == [] and not any(s.kind == "event" for s in timeline.spans)
    assert [m.kind for m in timeline.marks] == ["event", "terminate"]


def test_the_svg_draws_every_bar_escaped_with_an_axis() -> None:
    timeline = build_timeline(state(OrchestrationStatus.RUNNING, WAITING), HISTORY, now=T0 + 10)
    svg = render_svg(timeline)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="tl-bar') == 5 and svg.count("tl-bar tl-waiting tl-open") == 1
    assert svg.count("tl-bar tl-failed") == 2 and ">+0<" in svg and ">+10s<" in svg
    hostile = WaitingOn(events=(AwaitedEvent("<script>", T0 + 4, None),))
    drawn = render_svg(build_timeline(state(OrchestrationStatus.RUNNING, hostile), HISTORY, now=T0 + 10))
    assert "<script>" not in drawn and "event &lt;script&gt;" in drawn  # labels and titles are escaped
    empty = render_svg(build_timeline(state(OrchestrationStatus.PENDING), [], now=T0 + 1))
    assert "nothing scheduled yet" in empty
