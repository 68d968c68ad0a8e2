"""JSON-ready forms of what the client returns, with one time format: ISO 8601 in UTC with
milliseconds and a ``Z`` (``2026-11-21T10:34:29.298Z``), as ``perdure ... --json`` and
the diagnosis print them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from perdure.core.history import HistoryEvent, encode_event
from perdure.core.turn import WaitingOn
from perdure.diagnosis.text import iso

# History event fields that hold a point in time (UTC epoch seconds in the stored form).
_TIME_FIELDS = ("timestamp", "fire_at")


def iso_datetime(value: datetime | None) -> str | None:
    """An aware datetime in the JSON time format; None stays None."""
    return None if value is None else iso(value.timestamp())


def event_dict(event: HistoryEvent) -> dict[str, Any]:
    """A history event as JSON: ``kind`` and its fields, times in ISO 8601 UTC (the stored
    ``timestamp`` is ``time``)."""
    data = encode_event(event)
    data.pop("v", None)
    out: dict[str, Any] = {"kind": data.pop("kind"), "time": iso(data.pop("timestamp", None) or None)}
    for key, value in data.items():
        out[key] = iso(value) if key in _TIME_FIELDS and isinstance(value, (int, float)) else value
    return out


def waiting_on_dict(waiting: WaitingOn) -> dict[str, list[dict[str, Any]]]:
    """What an instance awaits, as JSON objects with ISO times."""
    return {
        "activities": [
            {"task_id": a.task_id, "name": a.name, "attempt": a.attempt, "scheduled_at": iso(a.scheduled_at)}
            for a in waiting.activities
        ],
        "timers": [{"task_id": t.task_id, "fire_at": iso(t.fire_at), "purpose": t.purpose} for t in waiting.timers],
        "children": [
            {"task_id": c.task_id, "name": c.name, "instance_id": c.instance_id, "scheduled_at": iso(c.scheduled_at)}
            for c in waiting.children
        ],
        "events": [{"name": e.name, "since": iso(e.since), "timeout_at": iso(e.timeout_at)} for e in waiting.events],
    }
