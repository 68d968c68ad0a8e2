"""Readable times, durations and payloads for the dashboard's templates (Jinja filters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from perdure.diagnosis.text import duration


def epoch(value: datetime | float | None) -> float | None:
    """A datetime or epoch seconds as epoch seconds."""
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def utc(value: datetime | float | None, *, seconds: bool = True) -> str:
    """``2026-11-21 10:34:28 UTC`` (empty for None)."""
    ts = epoch(value)
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def relative(value: datetime | float | None, now: float) -> str:
    """``4.2 s ago``, ``in 12 min``, ``just now``."""
    ts = epoch(value)
    if ts is None:
        return ""
    delta = now - ts
    if abs(delta) < 0.5:
        return "just now"
    return f"{duration(delta)} ago" if delta > 0 else f"in {duration(-delta)}"


def seconds(value: float | None) -> str:
    """A duration in seconds, readable (``-`` for None)."""
    return "-" if value is None else duration(value)


def pretty(value: Any) -> str:
    """JSON, indented, for a ``<pre>``."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any, limit: int = 80) -> str:
    """JSON (strings as they are) on one line, cut to ``limit`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


FILTERS = {
    "utc": utc,
    "seconds": seconds,
    "pretty": pretty,
    "compact": compact,
}
