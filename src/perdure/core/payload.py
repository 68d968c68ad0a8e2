"""JSON payloads: inputs, outputs, event data and custom status."""

from __future__ import annotations

import json
from typing import Any

from perdure.errors import SerializationError

#: Compact JSON (no spaces, UTF-8 kept, NaN/Infinity refused). One shared encoder: building
#: a JSONEncoder per call (what ``json.dumps`` does with non-default options) is the single
#: largest serialization cost on the hot path.
compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def dumps_payload(value: Any, *, what: str = "value", limit: int | None = None) -> str:
    """``value`` as compact JSON; a clear :class:`SerializationError` naming ``what`` if it is
    not JSON-serialisable or longer than ``limit`` bytes."""
    try:
        text = compact_json(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON-serialisable: {exc}") from exc
    if limit is not None:
        size = len(text.encode("utf-8"))
        if size > limit:
            raise SerializationError(f"{what} is {size} bytes of JSON, over the limit of {limit} bytes")
    return text


def loads_payload(text: str | None) -> Any:
    """Parse JSON written by :func:`dumps_payload` (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)
