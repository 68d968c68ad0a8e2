"""Which instances a bulk operation or a count applies to: :class:`InstanceFilter`."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from perdure.core.context import check_version
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.errors import InvalidInputError
from perdure.store.base import InstanceQuery

StatusArg = str | OrchestrationStatus | Iterable[str | OrchestrationStatus] | None


@frozen_record
class InstanceFilter:
    """The instances matching every given field (``None`` means "any"), the filters of
    :meth:`perdure.Client.list`:

    - ``status``: one status or several (``"RUNNING"``, ``OrchestrationStatus.FAILED``...);
    - ``name``: the orchestration's registered name;
    - ``created_after`` / ``created_before``: timezone-aware datetimes;
    - ``prefix``: the start of the instance id (``"order-"`` matches ``order-7``);
    - ``version``: the orchestration version the instance runs.

    ``InstanceFilter()`` matches every instance. Invalid values raise
    :class:`~perdure.errors.InvalidInputError` when the filter is made.
    """

    status: StatusArg = None
    name: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    prefix: str | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        parse_statuses(self.status)
        if self.version is not None:
            check_version(self.version)
        for field in ("created_after", "created_before"):
            timestamp(getattr(self, field), field)
        for field in ("name", "prefix"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInputError(f"{field} must be a non-empty string, got {value!r}")

    @property
    def statuses(self) -> frozenset[OrchestrationStatus] | None:
        """The statuses matched (None: every status)."""
        parsed = parse_statuses(self.status)
        return None if parsed is None else frozenset(parsed)

    def query(
        self,
        *,
        only: Collection[OrchestrationStatus] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> InstanceQuery | None:
        """The store query for one page, restricted to the statuses in ``only`` (if given);
        None when that restriction leaves no status to match."""
        statuses = self.statuses
        if only is not None:
            statuses = frozenset(only) if statuses is None else statuses & frozenset(only)
            if not statuses:
                return None
        return InstanceQuery(
            statuses=None if statuses is None else sorted(statuses, key=lambda s: s.value),
            name=self.name,
            created_after=timestamp(self.created_after, "created_after"),
            created_before=timestamp(self.created_before, "created_before"),
            instance_id_prefix=self.prefix,
            version=self.version,
            limit=limit,
            cursor=cursor,
        )

    def describe(self) -> str:
        """A short human description, e.g. ``status RUNNING, name order_saga``."""
        parts = []
        if self.statuses is not None:
            parts.append("status " + "|".join(sorted(s.value for s in self.statuses)))
        if self.name is not None:
            parts.append(f"name {self.name}")
        if self.version is not None:
            parts.append(f"version {self.version}")
        if self.prefix is not None:
            parts.append(f"id prefix {self.prefix!r}")
        if self.created_after is not None:
            parts.append(f"created after {self.created_after.isoformat()}")
        if self.created_before is not None:
            parts.append(f"created before {self.created_before.isoformat()}")
        return ", ".join(parts) or "all instances"


def parse_statuses(status: StatusArg) -> list[OrchestrationStatus] | None:
    """``status`` (one, several, or None) as a list of :class:`OrchestrationStatus`; a clear
    error naming the valid ones for anything else."""
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    out = []
    for value in values:
        try:
            out.append(OrchestrationStatus(str(getattr(value, "value", value)).upper()))
        except ValueError:
            choices = ", ".join(s.value for s in OrchestrationStatus)
            raise InvalidInputError(f"unknown status {value!r}; expected one of {choices}") from None
    return out


def timestamp(value: datetime | None, what: str) -> float | None:
    """``value`` as UTC epoch seconds; it must be a timezone-aware datetime (or None)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise InvalidInputError(f"{what} must be timezone-aware (e.g. datetime.now(UTC))")
    return value.timestamp()
