"""Errors as HTTP answers: every refusal is ``{"error": {"code", "message"}}`` with its status.

:class:`ApiError` carries a status, a code and a one-line message; :func:`from_exception`
maps perdure's exceptions onto them (bad input 400, unknown 404, state conflicts 409, an
unreachable store 503). Messages never carry a secret: URLs in them lose their password.
"""

from __future__ import annotations

import re
from typing import Any

from perdure.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceStateError,
    InvalidInputError,
    InvalidInstanceIdError,
    PerdureError,
    SerializationError,
    StoreUnavailableError,
)

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")
_KEY_PASSWORD = re.compile(r"(?P<key>password\s*=\s*)('[^']*'|\"[^\"]*\"|\S+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:secret@host``) and every
    ``password=...`` setting replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEY_PASSWORD.sub(lambda m: f"{m['key']}***", text)


class ApiError(Exception):
    """A refusal with its HTTP ``status``, a stable ``code`` and a one-line ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = " ".join(mask_secrets(message).split())

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code", "message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}


# Most specific first: the first class an exception is an instance of decides.
_MAPPING: tuple[tuple[type[BaseException], int, str], ...] = (
    (InvalidInstanceIdError, 400, "invalid_instance_id"),
    (SerializationError, 400, "invalid_payload"),
    (InvalidInputError, 400, "invalid_input"),
    (InstanceNotFoundError, 404, "not_found"),
    (InstanceExistsError, 409, "instance_exists"),
    (InstanceStateError, 409, "invalid_state"),
    (StoreUnavailableError, 503, "store_unavailable"),
    (PerdureError, 500, "store_error"),
)


def from_exception(exc: PerdureError) -> ApiError:
    """The HTTP answer for one of perdure's exceptions (its message kept: it names what was
    wrong)."""
    message = str(exc.args[0]) if isinstance(exc, LookupError) and exc.args else str(exc)
    for cls, status, code in _MAPPING:
        if isinstance(exc, cls):
            return ApiError(status, code, message)
    return ApiError(500, "store_error", message)  # pragma: no cover  (PerdureError is last)


def as_api_error(exc: ApiError | PerdureError) -> ApiError:
    """``exc`` as an :class:`ApiError` (one of perdure's exceptions mapped by
    :func:`from_exception`)."""
    return exc if isinstance(exc, ApiError) else from_exception(exc)
