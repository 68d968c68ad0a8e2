"""JSON payloads: inputs, outputs, event data and custom status."""

from __future__ import annotations

import json
import json.encoder
from typing import Any

from perdure.errors import SerializationError

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""The default size limit of a payload's JSON: inputs and event data (client), activity
results and orchestration outputs (worker)."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_make_encoder = json.encoder.c_make_encoder


def compact_json(value: Any) -> str:
    """Compact JSON (no spaces, UTF-8 kept, NaN/Infinity refused): ``TypeError`` for a value
    JSON cannot hold, ``ValueError`` for NaN, infinities and circular references.

    It calls the C encoder that ``JSONEncoder.encode`` builds, without the Python layers
    around it (this is the hottest serialization call); a fresh ``markers`` dict per call
    keeps circular-reference detection exact even after an earlier call failed half way.
    """
    if _make_encoder is None:  # an interpreter without the C accelerator
        return _ENCODER.encode(value)
    encode = _make_encoder({}, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return "".join(encode(value, 0))


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
