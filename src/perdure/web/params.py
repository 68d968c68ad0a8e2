"""Query parameters, checked before any store read: the instance list's filters and the
small integer and time parameters of the other routes. Bad values raise
:class:`~perdure.web.errors.ApiError` (400) naming the parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.web.errors import ApiError

STATUSES = tuple(s.value for s in OrchestrationStatus)
SORTS = ("created", "updated")
MAX_PAGE = 1000
LIST_PARAMS = frozenset(
    {"status", "name", "version", "prefix", "created_after", "created_before", "sort", "limit", "cursor"}
)


def bad(name: str, message: str) -> ApiError:
    """A 400 for parameter ``name``."""
    return ApiError(400, "invalid_parameter", f"parameter {name!r}: {message}")


def reject_unknown(params: Iterable[str], allowed: Iterable[str]) -> None:
    """400 for a parameter the route does not take (a typo would otherwise be ignored)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise bad(unknown[0], f"unknown parameter; this route takes {', '.join(sorted(allowed)) or 'none'}")


def integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """``params[name]`` as an integer from ``low`` to ``high`` (``default`` when absent or empty)."""
    text = params.get(name) or ""
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad(name, f"expected an integer, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise bad(name, f"must be from {low} to {high}, got {value}")
    return value


def number(params: Mapping[str, str], name: str, default: float | None) -> float | None:
    """``params[name]`` as a number of seconds >= 0 (``default`` when absent or empty)."""
    text = params.get(name) or ""
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise bad(name, f"expected a number of seconds, got {text[:40]!r}") from None
    if not 0 <= value < float("inf"):
        raise bad(name, f"must be a number of seconds >= 0, got {text[:40]!r}")
    return value


def timestamp(params: Mapping[str, str], name: str) -> datetime | None:
    """``params[name]`` as an aware datetime: ISO 8601, UTC when it has no offset."""
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad(name, f"expected an ISO 8601 time such as 2026-11-21T10:30:00Z, got {text[:40]!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@frozen_record
class ListFilters:
    """The instance list's filters, paging and order, as the API and the dashboard take them:
    ``status`` (repeatable or comma-separated), ``name``, ``version`` (of the orchestration),
    ``prefix`` (of the instance id),
    ``created_after`` / ``created_before`` (ISO 8601), ``sort`` (``created`` or ``updated``,
    newest first), ``limit`` and ``cursor``."""

    statuses: tuple[str, ...] = ()
    name: str | None = None
    version: int | None = None
    prefix: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    sort: str = "created"
    limit: int = 50
    cursor: str | None = None
    raw_times: tuple[str, str] = field(default=("", ""), compare=False)

    @classmethod
    def parse(cls, query: Any, *, strict: bool) -> ListFilters:
        """Read a Starlette ``QueryParams`` (``strict``: unknown parameters are a 400)."""
        if strict:
            reject_unknown(query.keys(), LIST_PARAMS)
        statuses: list[str] = []
        for value in query.getlist("status"):
            for part in value.split(","):
                part = part.strip().upper()
                if not part:
                    continue
                if part not in STATUSES:
                    raise bad("status", f"unknown status {part!r}; expected one of {', '.join(STATUSES)}")
                if part not in statuses:
                    statuses.append(part)
        sort = query.get("sort") or "created"
        if sort not in SORTS:
            raise bad("sort", f"expected 'created' or 'updated', got {sort[:40]!r}")
        return cls(
            statuses=tuple(statuses),
            name=query.get("name") or None,
            version=integer(query, "version", 0, 1, 2**31 - 1) or None,
            prefix=query.get("prefix") or None,
            created_after=timestamp(query, "created_after"),
            created_before=timestamp(query, "created_before"),
            sort=sort,
            limit=integer(query, "limit", 50, 1, MAX_PAGE),
            cursor=query.get("cursor") or None,
            raw_times=(query.get("created_after") or "", query.get("created_before") or ""),
        )

    def client_kwargs(self) -> dict[str, Any]:
        """The keywords of :meth:`perdure.Client.list`."""
        return {
            "status": list(self.statuses) or None,
            "name": self.name,
            "version": self.version,
            "prefix": self.prefix,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "sort": self.sort,
            "limit": self.limit,
            "cursor": self.cursor,
        }

    def query_string(self, **changes: Any) -> str:
        """These filters as a query string (for links), with ``changes`` applied; the
        cursor is dropped unless given."""
        changes.setdefault("cursor", None)
        f = replace(self, **changes)
        pairs: list[tuple[str, str]] = [("status", s) for s in f.statuses]
        for key, value in (
            ("name", f.name),
            ("version", None if f.version is None else str(f.version)),
            ("prefix", f.prefix),
            ("created_after", f.raw_times[0]),
            ("created_before", f.raw_times[1]),
            ("sort", None if f.sort == "created" else f.sort),
            ("limit", None if f.limit == 50 else str(f.limit)),
            ("cursor", f.cursor),
        ):
            if value:
                pairs.append((key, value))
        return urlencode(pairs)

    @property
    def is_filtered(self) -> bool:
        """True when any filter narrows the list."""
        return bool(
            self.statuses or self.name or self.version or self.prefix or self.created_after or self.created_before
        )
