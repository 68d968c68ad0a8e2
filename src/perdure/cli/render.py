"""How the CLI shows instances and histories: on screen, local times with their age ("in
12 s", "3 min ago") and ids in full; as JSON, the client's forms (ISO 8601 UTC times)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from perdure.client import InstanceState
from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    EventRaised,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionRewound,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    MessageDiscarded,
    PatchMarker,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
    TimerFired,
    TurnStarted,
    encode_event,
)
from perdure.core.rewind import turn_numbers
from perdure.core.turn import WaitingOn
from perdure.views import event_dict

PAYLOAD_LIMIT = 2000  # characters of a payload shown on screen; --json shows all


def print_table(table: Table) -> None:
    """``table`` on stdout: on a terminal as wide as it, piped as wide as the rows need
    (never wrapped), without trailing blanks."""
    tty = sys.stdout.isatty()
    out = Console(highlight=False, width=None if tty else 100_000, force_terminal=tty or None)
    with out.capture() as captured:
        out.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


# -- times --


def local_time(ts: float, *, ms: bool = False) -> str:
    """``ts`` (epoch seconds) as local ``YYYY-MM-DD HH:MM:SS`` (with milliseconds if asked)."""
    moment = datetime.fromtimestamp(ts).astimezone()
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + f".{moment.microsecond // 1000:03d}" if ms else text


def relative(ts: float, now: float | None = None) -> str:
    """How far ``ts`` is from now: ``in 12 s``, ``3 min ago``, ``now``."""
    delta = ts - (time.time() if now is None else now)
    if abs(delta) < 0.5:
        return "now"
    span = age(abs(delta))
    return f"in {span}" if delta > 0 else f"{span} ago"


def age(seconds: float) -> str:
    """A duration in one unit: ``850 ms``, ``4.2 s``, ``12 s``, ``3 min``, ``5.5 h``, ``2 d``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{seconds:.0f} s"  # unreachable: seconds >= 1 here


def when(ts: float, now: float | None = None) -> str:
    """``2026-11-21 10:34:29 UTC (3 min ago)``: local time, zone and age."""
    zone = datetime.fromtimestamp(ts).astimezone().strftime("%Z")
    return f"{local_time(ts)} {zone} ({relative(ts, now)})"


# -- payloads --


def payload(value: Any, limit: int = PAYLOAD_LIMIT) -> str:
    """A payload as compact JSON (a string as JSON too, so ``"7"`` and ``7`` differ), cut
    at ``limit`` characters with a note of what was left out."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters; --json shows all)"


def failure_lines(failure: Failure, *, traceback: bool) -> list[str]:
    """A failure and its causes, one line each, then (if asked) the innermost traceback."""
    lines = [str(failure)]
    lines += [f"caused by {cause}" for cause in failure.chain()[1:]]
    innermost = failure.chain()[-1].traceback or failure.traceback
    if traceback and innermost:
        lines += innermost.rstrip("\n").splitlines()
    return lines


# -- status --


def waiting_lines(waiting: WaitingOn, now: float) -> list[str]:
    """What a running instance awaits, one line per thing, with times and ages."""
    lines = []
    for a in waiting.activities:
        attempt = f", attempt {a.attempt}" if a.attempt > 1 else ""
        lines.append(f"activity {a.name} (task {a.task_id}{attempt}) scheduled {when(a.scheduled_at, now)}")
    deadlines = {e.timeout_at for e in waiting.events if e.timeout_at is not None}
    for e in waiting.events:
        deadline = f", times out {when(e.timeout_at, now)}" if e.timeout_at is not None else ""
        lines.append(f"event {e.name} since {when(e.since, now)}{deadline}")
    for t in waiting.timers:
        if t.purpose == "timeout" and t.fire_at in deadlines:
            continue  # shown with its event
        what = {"retry": "retry timer", "timeout": "timeout"}.get(t.purpose, "timer")
        lines.append(f"{what} (task {t.task_id}) fires {when(t.fire_at, now)}")
    for c in waiting.children:
        lines.append(f"child {c.instance_id} ({c.name}, task {c.task_id}) started {when(c.scheduled_at, now)}")
    return lines


def show_state(state: InstanceState, children: Sequence[InstanceState] = ()) -> None:
    """The instance as labelled lines: status, times, payloads, outcome, what it awaits,
    parent and children."""
    now = time.time()
    rows: list[tuple[str, list[str]]] = [
        ("instance", [state.instance_id]),
        ("name", [state.name]),
        ("version", [str(state.version) if state.version is not None else "not chosen yet (the first turn picks it)"]),
        ("status", [state.status.value]),
        ("execution", [str(state.execution_id)]),
        ("created", [when(state.created_at.timestamp(), now)]),
        ("updated", [when(state.last_updated_at.timestamp(), now)]),
        ("input", [payload(state.input)]),
    ]
    if state.status.value == "COMPLETED":
        rows.append(("output", [payload(state.output)]))
    if state.failure is not None:
        rows.append(("failure", failure_lines(state.failure, traceback=True)))
    if state.status.value == "TERMINATED":
        rows.append(("reason", [state.termination_reason or "(none given)"]))
    if state.custom_status is not None:
        rows.append(("custom status", [payload(state.custom_status)]))
    if not state.is_terminal:
        rows.append(("waiting on", waiting_lines(state.waiting_on, now) or ["nothing (a turn is due)"]))
    if state.parent_instance_id is not None:
        rows.append(("parent", [state.parent_instance_id]))
    if children:
        rows.append(("children", [f"{c.instance_id} ({c.name}) {c.status.value}" for c in children]))
    rows.append(("history", [f"{state.history_event_count} events (perdure history {state.instance_id})"]))
    width = max(len(label) for label, _ in rows) + 2
    for label, lines in rows:
        for i, line in enumerate(lines):
            click.echo(f"{(label if i == 0 else ''):<{width}}{line}")


# -- list --


def show_list(states: Sequence[InstanceState]) -> None:
    """Instances as a table, ids never cut."""
    now = time.time()
    table = Table(box=None, padding=(0, 3, 0, 0), header_style="bold")
    longest = max((len(s.instance_id) for s in states), default=8)
    table.add_column("INSTANCE", no_wrap=True, min_width=longest, overflow="fold")
    table.add_column("NAME", no_wrap=True, overflow="fold")
    table.add_column("VER", justify="right", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("EXEC", justify="right", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("UPDATED", no_wrap=True)
    table.add_column("CUSTOM STATUS", overflow="ellipsis", max_width=40)
    for s in states:
        table.add_row(
            s.instance_id,
            s.name,
            "-" if s.version is None else str(s.version),
            s.status.value,
            str(s.execution_id),
            local_time(s.created_at.timestamp()),
            relative(s.last_updated_at.timestamp(), now),
            "" if s.custom_status is None else payload(s.custom_status, 200),
        )
    print_table(table)


# -- history --


def event_details(event: HistoryEvent, now: float) -> str:
    """What one history event says, in words and JSON payloads."""
    match event:
        case ExecutionStarted(name=name, input=data, execution_id=execution, parent=parent, version=version):
            child = f", child of {parent.instance_id} (task {parent.task_id})" if parent else ""
            origin = event.origin
            made = f", {origin.kind} of run {origin.run_id[:8]}" if origin else ""
            return f"{name} version {version} execution {execution}{child}{made}, input {payload(data)}"
        case PatchMarker(patch_id=patch_id, deprecated=deprecated):
            return patch_id + (" (deprecated)" if deprecated else "")
        case ExecutionRewound(undone_from=undone, reason=reason):
            return f"undid events {undone} to here" + (f": {reason}" if reason else "")
        case ActivityScheduled(task_id=task, name=name, input=data, attempt=attempt, max_attempts=most):
            tries = f", attempt {attempt}" + (f" of {most}" if most else "") if attempt > 1 or most else ""
            return f"{name} (task {task}{tries}), input {payload(data)}"
        case ActivityCompleted(task_id=task, result=result):
            return f"task {task}: {payload(result)}"
        case ActivityFailed(task_id=task, failure=failure) | SubOrchestrationFailed(task_id=task, failure=failure):
            return f"task {task}: {failure}"
        case TimerCreated(task_id=task, fire_at=fire_at):
            return f"task {task}, fires {when(fire_at, now)}"
        case TimerFired(task_id=task):
            return f"task {task}"
        case SubOrchestrationCreated(task_id=task, name=name, instance_id=child, input=data):
            return f"{name} as {child} (task {task}), input {payload(data)}"
        case SubOrchestrationCompleted(task_id=task, result=result):
            return f"task {task}: {payload(result)}"
        case EventRaised(name=name, input=data):
            return f"{name}: {payload(data)}"
        case CustomStatusSet(status=status):
            return payload(status)
        case ExecutionCompleted(result=result):
            return payload(result)
        case ExecutionFailed(failure=failure):
            return str(failure)
        case ExecutionTerminated(reason=reason) | ExecutionSuspended(reason=reason) | ExecutionResumed(reason=reason):
            return reason or ""
        case ContinuedAsNew(input=data):
            return f"next execution's input {payload(data)}"
        case MessageDiscarded(reason=reason, message=message, detail=detail):
            return f"{reason}: {message.get('kind', '?')}" + (f" ({detail})" if detail else "")
        case TurnStarted():
            return ""
    data = encode_event(event)
    for key in ("v", "kind", "timestamp"):
        data.pop(key, None)
    return payload(data) if data else ""


def show_history(events: Sequence[HistoryEvent], *, turns: bool, title: str | None = None) -> None:
    """A history as a table: position, turn (as ``perdure reset --to-turn`` counts them),
    local time, event, details; turn markers only if ``turns``."""
    now = time.time()
    table = Table(box=None, padding=(0, 3, 0, 0), header_style="bold", title=title, title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("TURN", justify="right", no_wrap=True)
    table.add_column("TIME", no_wrap=True)
    table.add_column("EVENT", no_wrap=True)
    table.add_column("DETAILS", overflow="fold")
    for index, (event, turn) in enumerate(zip(events, turn_numbers(events), strict=True)):
        if isinstance(event, TurnStarted) and not turns:
            continue
        stamp = local_time(event.timestamp, ms=True) if event.timestamp else ""
        table.add_row(str(index), str(turn), stamp, type(event).__name__, event_details(event, now))
    print_table(table)


def history_json(events: Sequence[HistoryEvent], execution_id: int, *, turns: bool) -> list[dict[str, Any]]:
    """A history as JSON objects with their position (``index``), turn and execution."""
    return [
        {"index": index, "turn": turn, "execution_id": execution_id, **event_dict(event)}
        for index, (event, turn) in enumerate(zip(events, turn_numbers(events), strict=True))
        if turns or not isinstance(event, TurnStarted)
    ]
