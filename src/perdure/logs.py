"""Logging for people and for log shippers.

perdure logs through the standard :mod:`logging` module and installs no handlers itself:
``perdure.worker`` (the worker: activity failures and retries, failed instances,
nondeterminism, lost leases, shutdown), ``perdure.orchestration`` (``ctx.logger``, silent
while replaying) and ``perdure.store.postgres`` (retried connection faults). Records about
an instance carry its ids as attributes: ``instance_id``, ``execution_id`` and
``task_id`` (None where they do not apply).

This module is what ``perdure worker`` uses to show them, for applications that want the
same: :class:`ContextFilter` adds those attributes to every record (records logged by
your own code inside an activity get them from :func:`perdure.activity_info`),
:class:`TextFormatter` writes one readable line per record and :class:`JsonFormatter`
one JSON object per line; :func:`configure_logging` puts them on the root logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from perdure.runtime.activity_info import running_activity

FIELDS = ("instance_id", "execution_id", "task_id")
"""The record attributes that say which instance (execution, task) a record is about."""

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")


def ids(instance_id: str | None, execution_id: int | None = None, task_id: int | None = None) -> dict[str, Any]:
    """The ``extra=`` of a log call about an instance: ``log.warning(..., extra=ids(iid))``."""
    return {"instance_id": instance_id, "execution_id": execution_id, "task_id": task_id}


class ContextFilter(logging.Filter):
    """Gives every record the :data:`FIELDS` attributes: those the log call set, else those
    of the activity running in this thread (so ``logging.getLogger(__name__).info(...)``
    inside an activity names its instance and task), else None. Attach it to a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill in the missing fields; never drops a record."""
        info = running_activity()
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(info, name) if info is not None else None)
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-21 10:34:29.298 WARNING order-7 activity 'charge' failed ...``: local time,
    level, the instance id (``-`` when there is none; ``order-7/3`` with a task id) and
    the message; a traceback, if any, on the lines after it."""

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus the traceback of an exception, if logged with one)."""
        when = datetime.fromtimestamp(record.created).astimezone()
        stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(record.msecs):03d}"
        iid = getattr(record, "instance_id", None)
        task = getattr(record, "task_id", None)
        where = "-" if iid is None else (iid if task is None else f"{iid}/{task}")
        line = f"{stamp} {record.levelname:<7} {where} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 UTC), ``level``, ``logger``,
    ``message``, the :data:`FIELDS`, and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        data: dict[str, Any] = {
            "time": when.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            data[name] = getattr(record, name, None)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Log to ``stream`` (default stderr) at ``level`` in ``fmt`` (``"text"`` or ``"json"``),
    from the root logger, so your own loggers show too; replaces the handlers that an
    earlier call installed. Returns the handler."""
    level = str(level).upper()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.set_name("perdure")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "perdure"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
