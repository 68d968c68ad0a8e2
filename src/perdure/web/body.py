"""Request bodies: read with a size cap, parsed as JSON, shapes checked before the client
sees them."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from perdure.web.errors import ApiError

_MISSING = object()


async def read_json(request: Request, limit: int, *, empty: Any = _MISSING) -> Any:
    """The request body parsed as JSON. A body over ``limit`` bytes is a 413 (read no
    further); one that is not JSON a 400. An empty body gives ``empty`` if given, else 400."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if empty is _MISSING:
            raise ApiError(400, "invalid_body", "the request body is empty; send a JSON document")
        return empty
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "the request body is not UTF-8 text") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_body", f"the request body is not valid JSON: {exc}") from None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the request body is over {limit} bytes")


def json_object(value: Any, fields: dict[str, bool], what: str) -> dict[str, Any]:
    """``value`` checked to be a JSON object with only ``fields`` (name -> required)."""
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_body", f"{what} must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ApiError(
            400, "invalid_body", f"{what} has an unknown field {unknown[0]!r}; its fields are {', '.join(fields)}"
        )
    missing = [name for name, required in fields.items() if required and name not in value]
    if missing:
        raise ApiError(400, "invalid_body", f"{what} needs the field {missing[0]!r}")
    return value


def optional_string(data: dict[str, Any], name: str, what: str) -> str | None:
    """``data[name]`` if it is a string, None if absent or null; 400 otherwise."""
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid_body", f"{what}: {name!r} must be a string, got {type(value).__name__}")
    return value
