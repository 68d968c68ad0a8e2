"""The state shared by the statements of one write transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Tx:
    """One write transaction: its connection, its single reading of the clock (every
    timestamp written by the transaction uses it), and the notifier topics to signal once
    it has committed."""

    conn: sqlite3.Connection
    now: float
    topics: set[str] = field(default_factory=set)
    # In a worker round (and only there), the leases of the instances locked by this very
    # transaction, not yet written: a turn committed in the same transaction needs no lease
    # row, since no other writer can come between its lock and its commit. ``None``: leases
    # are written as rows when taken (the lock and the commit are separate transactions).
    round_leases: dict[str, RoundLease] | None = None

    def notify(self, *topics: str) -> None:
        """Signal ``topics`` after the commit (never before: a woken waiter must see the rows)."""
        self.topics.update(topics)


@dataclass(frozen=True, slots=True)
class RoundLease:
    """A lease taken by a round's transaction on an instance that had no lease row: the lock's
    reading of the instance row and the ids of the messages it delivered."""

    owner: str
    token: str
    expires_at: float
    lease_seconds: float
    row: Any  # the instance row (sqlite3.Row) as the lock read it
    delivered: frozenset[int]
