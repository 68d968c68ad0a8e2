"""Failures as data: what went wrong in an activity, a child or an orchestration."""

from __future__ import annotations

import traceback as _traceback
from typing import Any

from perdure.core.records import frozen_record


@frozen_record
class Failure:
    """An error captured as data so it can be stored in history and re-raised elsewhere.

    ``type`` is the error's class name (qualified with its module unless built in),
    ``message`` its ``str()``, ``traceback`` the formatted traceback text, and ``cause``
    the failure it wraps (for example a child orchestration's own failure).
    ``non_retryable`` marks a failure that retry policies must not retry.
    """

    type: str
    message: str
    traceback: str | None = None
    cause: Failure | None = None
    non_retryable: bool = False

    @classmethod
    def from_exception(cls, exc: BaseException, *, non_retryable: bool = False) -> Failure:
        """Capture ``exc`` (type, message, formatted traceback, cause chain)."""
        kind = type(exc)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        cause = getattr(exc, "failure", None)
        if not isinstance(cause, Failure):
            cause = None
            if exc.__cause__ is not None:
                cause = Failure.from_exception(exc.__cause__)
        text = "".join(_traceback.format_exception(kind, exc, exc.__traceback__))
        return cls(name, str(exc), text, cause, non_retryable)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        data: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.traceback is not None:
            data["traceback"] = self.traceback
        if self.cause is not None:
            data["cause"] = self.cause.to_dict()
        if self.non_retryable:
            data["non_retryable"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        """Read the JSON form (unknown keys are ignored)."""
        cause = data.get("cause")
        return cls(
            str(data.get("type", "Error")),
            str(data.get("message", "")),
            data.get("traceback"),
            cls.from_dict(cause) if cause else None,
            bool(data.get("non_retryable", False)),
        )

    def chain(self) -> list[Failure]:
        """This failure and its causes, outermost first."""
        out: list[Failure] = []
        node: Failure | None = self
        while node is not None:
            out.append(node)
            node = node.cause
        return out

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"
