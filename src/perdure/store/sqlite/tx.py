"""The state shared by the statements of one write transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field


@dataclass(slots=True)
class Tx:
    """One write transaction: its connection, its single reading of the clock (every
    timestamp written by the transaction uses it), and the notifier topics to signal once
    it has committed."""

    conn: sqlite3.Connection
    now: float
    topics: set[str] = field(default_factory=set)

    def notify(self, *topics: str) -> None:
        """Signal ``topics`` after the commit (never before: a woken waiter must see the rows)."""
        self.topics.update(topics)
