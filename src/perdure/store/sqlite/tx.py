"""The state shared by the statements of one write transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from perdure.store.common.encode import StoreOptions
from perdure.store.common.scheduled import ScheduledTake
from perdure.store.notify import INSTANCES


@dataclass(slots=True)
class Tx:
    """One write transaction: its connection, its single reading of the clock (every
    timestamp written by the transaction uses it), the store's options, and the notifier
    topics to signal once it has committed."""

    conn: sqlite3.Connection
    now: float
    options: StoreOptions = field(default_factory=StoreOptions)
    topics: set[str] = field(default_factory=set)
    #: The tasks the transaction's turns schedule that it writes locked for its worker
    #: (a round's :attr:`~perdure.store.base.RoundRequest.take_scheduled`), or None.
    scheduled: ScheduledTake | None = None
    #: The instances its turns end (:meth:`instance_ended`).
    ended: list[str] = field(default_factory=list)

    def notify(self, *topics: str) -> None:
        """Signal ``topics`` after the commit (never before: a woken waiter must see the rows)."""
        self.topics.update(topics)

    def instance_ended(self, instance_id: str) -> None:
        """A turn of this transaction ends ``instance_id``: signal ``INSTANCES`` after the
        commit, and let the store hand its row to a waiter
        (:class:`~perdure.store.notify.EndedRows`)."""
        self.ended.append(instance_id)
        self.topics.add(INSTANCES)
