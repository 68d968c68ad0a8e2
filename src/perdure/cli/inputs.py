"""Reading what the user typed: JSON payloads (inline, ``@file`` or ``-`` for stdin),
points in time, and the instance filters shared by ``list`` and the bulk operations."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from perdure.errors import InvalidInputError
from perdure.instance_filter import InstanceFilter

F = TypeVar("F", bound=Callable[..., Any])

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def payload_arg(text: str | None, what: str) -> Any:
    """The JSON value the user gave as ``text``: inline JSON, ``@path`` (a file's content)
    or ``-`` (standard input); None when nothing was given."""
    if text is None:
        return None
    source = text
    if text == "-":
        source = sys.stdin.read()
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read {what} from {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return json.loads(source)
    except ValueError as exc:
        origin = {"-": " (from stdin)"}.get(text, f" (from {text[1:]!r})" if text.startswith("@") else "")
        shown = "" if origin else f": {source[:60]!r}"
        hint = ""
        if not origin and re.fullmatch(r"[\w.@:/-]+", source.strip()):
            hint = f"; a string needs JSON quotes: '{json.dumps(source.strip())}'"
        raise InvalidInputError(f"{what}{origin} is not valid JSON ({exc}){shown}{hint}") from None


def point_in_time(text: str, what: str, now: datetime | None = None) -> datetime:
    """A moment the user typed: ISO 8601 (``2026-11-21``, ``2026-11-21T10:30``, with ``Z``
    or an offset; without one, local time), or an age (``90s``, ``15m``, ``2h``, ``7d``
    ago)."""
    match = _AGO.match(text.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(
            f"{what} {text!r} is neither an ISO 8601 time (2026-11-21T10:30:00Z) nor an age (90s, 15m, 2h, 7d)"
        ) from None
    return moment.astimezone() if moment.tzinfo is None else moment


def filter_options(fn: F) -> F:
    """The instance filters of ``list`` and of the bulk operations."""
    options = [
        click.option(
            "--version",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="Only instances running version N of their orchestration.",
        ),
        click.option(
            "--prefix", default=None, metavar="TEXT", help="Only instances whose id starts with TEXT (e.g. order-)."
        ),
        click.option(
            "--created-before",
            default=None,
            metavar="TIME",
            help="Only instances created before TIME: ISO 8601 (2026-11-21T10:30Z; local time without a zone) "
            "or an age (90s, 15m, 2h, 7d).",
        ),
        click.option(
            "--created-after",
            default=None,
            metavar="TIME",
            help="Only instances created at or after TIME (same forms as --created-before).",
        ),
        click.option("--name", default=None, help="Only instances of this orchestration."),
        click.option(
            "--status",
            "statuses",
            multiple=True,
            metavar="STATUS",
            help="Only instances in this status (PENDING, RUNNING, SUSPENDED, COMPLETED, FAILED, TERMINATED); "
            "repeat it, or separate several with commas.",
        ),
    ]
    for option in options:
        fn = option(fn)
    return fn


def make_filter(
    statuses: tuple[str, ...],
    name: str | None,
    created_after: str | None,
    created_before: str | None,
    prefix: str | None,
    version: int | None = None,
) -> InstanceFilter:
    """The :class:`InstanceFilter` of the :func:`filter_options` values."""
    wanted = [s.strip() for value in statuses for s in value.split(",") if s.strip()]
    return InstanceFilter(
        status=wanted or None,
        name=name,
        created_after=None if created_after is None else point_in_time(created_after, "--created-after"),
        created_before=None if created_before is None else point_in_time(created_before, "--created-before"),
        prefix=prefix,
        version=version,
    )


def filter_given(
    statuses: tuple[str, ...],
    name: str | None,
    created_after: str | None,
    created_before: str | None,
    prefix: str | None,
    version: int | None = None,
) -> bool:
    """Whether any filter option was given."""
    return bool(statuses) or any(v is not None for v in (name, created_after, created_before, prefix, version))
