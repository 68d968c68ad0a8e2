"""Activity tasks a worker round takes as its own turns schedule them
(:attr:`perdure.store.base.RoundRequest.take_scheduled`): written already locked for the
worker, so that no statement has to find and lock them, and nobody else is told of them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from perdure.store.base import ActivityWorkItem, NewActivityTask
from perdure.store.common.rows import Row, lease_prefix, leased_task


@dataclass(slots=True)
class ScheduledTake:
    """Which of the tasks a transaction's committed turns schedule are written locked for
    ``owner`` until ``expires_at``: those due at once, of ``names`` (None: any), up to
    ``limit``, in the order they are written. A backend asks :meth:`lease` for each task it
    writes, and hands the rows of those it wrote locked to :meth:`add_rows`."""

    owner: str
    now: float
    expires_at: float
    limit: int
    names: Collection[str] | None = None
    taken: int = 0
    _prefix: str = field(default_factory=lease_prefix)
    _rows: list[Callable[[], Iterable[Row]]] = field(default_factory=list)

    def lease(self, task: NewActivityTask) -> dict[str, Any] | None:
        """The lease columns of ``task`` if it is taken (it then counts), else None (it is
        queued, and signalled, as any new task)."""
        if (
            self.taken >= self.limit
            or (task.visible_at is not None and task.visible_at > self.now)
            or (self.names is not None and task.name not in self.names)
        ):
            return None
        token = f"{self._prefix}{self.taken:x}"
        self.taken += 1
        return {
            "lease_owner": self.owner,
            "lease_token": token,
            "lease_expires_at": self.expires_at,
            "visible_at": self.expires_at,  # a locked task's visible_at is its lease expiry
            "delivery_count": 1,
            "locked_at": self.now,
        }

    def add_rows(self, read: Callable[[], Iterable[Row]]) -> None:
        """Register the reader of rows of tasks written locked (with the columns
        ``lock_activities`` returns; rows without a ``task_row_id`` are skipped)."""
        self._rows.append(read)

    def items(self) -> list[ActivityWorkItem]:
        """The work items of the tasks written locked, in the order they were written."""
        return [
            leased_task(row, self.owner, self.now, self.expires_at)
            for read in self._rows
            for row in read()
            if row["task_row_id"] is not None
        ]


def scheduled_lease(take: ScheduledTake | None, task: NewActivityTask, *, ending: bool) -> dict[str, Any] | None:
    """The lease columns of ``task``, scheduled by a turn, if ``take`` takes it (None: it is
    queued, and signalled). A turn that ends its instance takes none: its tasks are
    discarded with the instance's end."""
    return None if take is None or ending else take.lease(task)
