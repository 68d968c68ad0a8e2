"""Small formatting helpers shared by the diagnosis modules (no perdure imports)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def iso(ts: float | None) -> str | None:
    """``ts`` (UTC epoch seconds) as ISO-8601 with milliseconds and a ``Z``; None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clock_time(ts: float) -> str:
    """``ts`` as ``YYYY-MM-DD HH:MM:SS UTC`` for summaries."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """A human duration: ``850 ms``, ``4.2 s``, ``12 min``, ``3.5 h``, ``2.1 d``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def seconds(value: float) -> float:
    """A duration for evidence: seconds rounded to milliseconds."""
    return round(max(0.0, value), 3)


def short(value: Any, limit: int = 120) -> str:
    """``value`` as compact JSON (strings as they are), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plural(n: int, word: str) -> str:
    """``1 event``, ``2 events``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
