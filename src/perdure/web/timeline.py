"""The timeline of one execution: where the time went and what is still open.

:func:`build_timeline` reads a history (and the instance's ``waiting_on`` for the waits a
history does not record) and returns one :class:`Span` per activity attempt, timer, child
and open event wait, plus :class:`Mark` points for events that arrived and for suspend,
resume and terminate. :func:`render_svg` draws it on a time axis, coloured by outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from perdure.client import InstanceState
from perdure.core.history import (
    ActivityFailed,
    EventRaised,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    TimerFired,
    TurnStarted,
)
from perdure.diagnosis.evidence import HistoryIndex
from perdure.diagnosis.text import clock_time, duration

MAX_SPANS = 200


@dataclass(slots=True)
class Span:
    """One bar: ``kind`` is ``activity``, ``timer``, ``retry``, ``child`` or ``event``; ``end``
    is None while it is open; ``due`` is a timer's fire time or a wait's deadline.
    ``outcome`` (``completed``, ``failed``, ``running``, ``waiting``, ``fired`` or
    ``cancelled``) picks its colour (the CSS class ``tl-<outcome>``)."""

    kind: str
    label: str
    start: float
    end: float | None
    outcome: str
    detail: str = ""
    child_id: str | None = None
    due: float | None = None


@dataclass(slots=True)
class Mark:
    """A point in time: an event that arrived, or a suspend/resume/terminate."""

    at: float
    label: str
    kind: str


@dataclass(slots=True)
class Timeline:
    """Spans and marks of one execution between ``start`` and ``end`` (now while it runs)."""

    start: float
    end: float
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    hidden: int = 0

    @property
    def open_spans(self) -> list[Span]:
        """The spans still open."""
        return [s for s in self.spans if s.end is None]


def build_timeline(state: InstanceState, history: list[HistoryEvent], now: float) -> Timeline:
    """The timeline of ``history`` (an execution of ``state``'s instance). Open waits of the
    current execution come from ``state.waiting_on``."""
    index = HistoryIndex.build(history)
    stamps = [e.timestamp for e in history if e.timestamp]
    start = min(stamps, default=state.created_at.timestamp())
    finished = state.is_terminal or any(
        isinstance(e, (ExecutionCompleted, ExecutionFailed, ExecutionTerminated)) for e in history
    )
    end = max(stamps, default=start) if finished else max(now, max(stamps, default=start))
    timeline = Timeline(start=start, end=max(end, start + 0.001))
    open_outcome = "cancelled" if finished else "running"

    for task_id, (_, scheduled) in sorted(index.activities.items(), key=lambda item: item[1][0]):
        outcome_entry = index.activity_outcomes.get(task_id)
        attempts = f" of {scheduled.max_attempts}" if scheduled.max_attempts else ""
        label = f"{scheduled.name} #{scheduled.attempt}" if scheduled.attempt > 1 or attempts else scheduled.name
        if outcome_entry is None:
            span = Span("activity", label, scheduled.timestamp, None, open_outcome)
        elif isinstance(outcome_entry[1], ActivityFailed):
            failure = outcome_entry[1].failure
            span = Span("activity", label, scheduled.timestamp, outcome_entry[1].timestamp, "failed")
            span.detail = f"{failure.type}: {failure.message}"
        else:
            span = Span("activity", label, scheduled.timestamp, outcome_entry[1].timestamp, "completed")
        span.detail = f"activity {scheduled.name}, attempt {scheduled.attempt}{attempts}" + (
            f"; {span.detail}" if span.detail else ""
        )
        timeline.spans.append(span)

    fired = {e.task_id: e for e in history if isinstance(e, TimerFired)}
    purposes = {t.task_id: t.purpose for t in state.waiting_on.timers}
    deadlines = {e.timeout_at for e in state.waiting_on.events} if not finished else set()
    for task_id, (pos, created) in sorted(index.timers.items(), key=lambda item: item[1][0]):
        if task_id not in fired and purposes.get(task_id) == "timeout" and created.fire_at in deadlines:
            continue  # an open wait's timeout: drawn as the wait's deadline
        retried = _retried_activity(history, index, pos)
        kind = "retry" if retried else "timer"
        label = (
            f"retry {retried}"
            if retried
            else f"{purposes.get(task_id, 'timer')} {duration(created.fire_at - created.timestamp)}"
        )
        done = fired.get(task_id)
        if done is not None:
            span = Span(kind, label, created.timestamp, done.timestamp, "fired", due=created.fire_at)
        else:
            span = Span(
                kind, label, created.timestamp, None, "cancelled" if finished else "waiting", due=created.fire_at
            )
        never = ", never fired" if done is None and finished else ""
        span.detail = f"{'retry delay of ' + retried if retried else 'timer'}, due {_clock(created.fire_at)}{never}"
        timeline.spans.append(span)

    child_outcomes: dict[int, HistoryEvent] = {
        e.task_id: e for e in history if isinstance(e, (SubOrchestrationCompleted, SubOrchestrationFailed))
    }
    for task_id, (_, created) in sorted(index.children.items(), key=lambda item: item[1][0]):
        result = child_outcomes.get(task_id)
        if result is None:
            span = Span("child", f"child {created.name}", created.timestamp, None, open_outcome)
        else:
            outcome = "failed" if isinstance(result, SubOrchestrationFailed) else "completed"
            span = Span("child", f"child {created.name}", created.timestamp, result.timestamp, outcome)
        span.child_id = created.instance_id
        span.detail = f"sub-orchestration {created.name} ({created.instance_id})"
        timeline.spans.append(span)

    if not finished:
        for wait in state.waiting_on.events:
            span = Span("event", f"event {wait.name}", wait.since, None, "waiting", due=wait.timeout_at)
            deadline = f", times out {_clock(wait.timeout_at)}" if wait.timeout_at else ", no timeout"
            span.detail = f"waiting for event {wait.name!r} since {_clock(wait.since)}{deadline}"
            timeline.spans.append(span)

    for event in history:
        match event:
            case EventRaised():
                timeline.marks.append(Mark(event.timestamp, f"event {event.name} arrived", "event"))
            case ExecutionSuspended():
                timeline.marks.append(Mark(event.timestamp, "suspended", "suspend"))
            case ExecutionResumed():
                timeline.marks.append(Mark(event.timestamp, "resumed", "resume"))
            case ExecutionTerminated():
                timeline.marks.append(Mark(event.timestamp, "terminated", "terminate"))
            case _:
                pass

    if finished:  # what was still open when the execution ended was abandoned there
        for span in timeline.spans:
            if span.end is None:
                span.end, span.outcome = timeline.end, "cancelled"
    timeline.spans.sort(key=lambda s: (s.start, s.kind))
    if len(timeline.spans) > MAX_SPANS:
        # keep the open spans and the most recent closed ones
        open_spans = [s for s in timeline.spans if s.end is None]
        recent = [s for s in timeline.spans if s.end is not None][-(MAX_SPANS - len(open_spans)) :]
        timeline.hidden = len(timeline.spans) - len(open_spans) - len(recent)
        timeline.spans = sorted(open_spans + recent, key=lambda s: (s.start, s.kind))
    return timeline


def _retried_activity(history: list[HistoryEvent], index: HistoryIndex, timer_pos: int) -> str | None:
    """The activity whose retry delay the timer at ``timer_pos`` is: a failure applied in the
    same turn, just before the timer was created (else None)."""
    for event in reversed(history[:timer_pos]):
        if isinstance(event, TurnStarted):
            return None
        if isinstance(event, ActivityFailed) and event.task_id in index.activities:
            return index.activities[event.task_id][1].name
    return None


def _clock(ts: float | None) -> str:
    return "-" if ts is None else clock_time(ts)


# -- SVG --

_WIDTH = 1000
_LABEL = 190
_ROW = 22
_BAR = 14
_TOP = 26


def _ticks(length: float, count: int = 6) -> list[float]:
    """Round tick steps over ``length`` seconds."""
    raw = length / count
    steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600]
    steps += [900, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800]
    step = next((s for s in steps if s >= raw), steps[-1])
    out, t = [], 0.0
    while t <= length + 1e-9:
        out.append(t)
        t += step
    return out


def render_svg(timeline: Timeline) -> str:
    """The timeline as an inline SVG: a row per span, bars coloured by outcome (CSS classes
    ``tl-<outcome>``), open ones running to the right edge with an arrow, marks as
    diamonds on their own row, and an axis of times since the execution started."""
    rows = len(timeline.spans) + (1 if timeline.marks else 0)
    height = _TOP + max(rows, 1) * _ROW + 8
    length = timeline.end - timeline.start
    plot = _WIDTH - _LABEL - 12

    def x(ts: float) -> float:
        return _LABEL + max(0.0, min(1.0, (ts - timeline.start) / length)) * plot

    parts = [
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="100%" role="img" '
        f'aria-label="timeline of {len(timeline.spans)} steps" xmlns="http://www.w3.org/2000/svg">'
    ]
    for t in _ticks(length):
        px = _LABEL + (t / length) * plot
        parts.append(f'<line class="tl-grid" x1="{px:.1f}" y1="{_TOP - 6}" x2="{px:.1f}" y2="{height - 4}"/>')
        parts.append(f'<text class="tl-tick" x="{px:.1f}" y="{_TOP - 10}" text-anchor="middle">+{_tick(t)}</text>')
    for i, span in enumerate(timeline.spans):
        y = _TOP + i * _ROW
        x0 = x(span.start)
        x1 = x(span.end if span.end is not None else timeline.end)
        width = max(3.0, x1 - x0)
        took = duration((span.end if span.end is not None else timeline.end) - span.start)
        state = "open" if span.end is None else span.outcome
        title = escape(f"{span.detail} — {state}, {took}" + ("" if span.end is not None else " so far"))
        label = escape(span.label if len(span.label) <= 26 else span.label[:25] + "…")
        parts.append(f'<g class="tl-row tl-{span.kind}"><title>{title}</title>')
        parts.append(f'<text class="tl-label" x="{_LABEL - 8}" y="{y + _BAR - 2}" text-anchor="end">{label}</text>')
        classes = f"tl-bar tl-{span.outcome}" + (" tl-open" if span.end is None else "")
        parts.append(
            f'<rect class="{classes}" x="{x0:.1f}" y="{y}" width="{width:.1f}" height="{_BAR}" rx="3" ry="3"/>'
        )
        if span.end is None:
            parts.append(
                f'<path class="tl-arrow tl-{span.outcome}" d="M{x0 + width:.1f},{y} l6,{_BAR / 2} l-6,{_BAR / 2} z"/>'
            )
        if width > 60:
            parts.append(f'<text class="tl-took" x="{x0 + 5:.1f}" y="{y + _BAR - 3}">{escape(took)}</text>')
        parts.append("</g>")
    if timeline.marks:
        y = _TOP + len(timeline.spans) * _ROW
        parts.append(f'<text class="tl-label" x="{_LABEL - 8}" y="{y + _BAR - 2}" text-anchor="end">events</text>')
        for mark in timeline.marks:
            cx, cy = x(mark.at), y + _BAR / 2
            parts.append(
                f'<path class="tl-mark tl-mark-{mark.kind}" d="M{cx:.1f},{cy - 6} l6,6 l-6,6 l-6,-6 z">'
                f"<title>{escape(mark.label)} at {escape(_clock(mark.at))}</title></path>"
            )
    if not timeline.spans and not timeline.marks:
        parts.append(f'<text class="tl-empty" x="{_LABEL}" y="{_TOP + 12}">nothing scheduled yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tick(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    if seconds < 86400:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 86400:g}d"
