"""The state shared by the statements of one write transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from perdure.core.history import dumps_event
from perdure.errors import SerializationError


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


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """Deferral of undeliverable messages (invariant 3): retry ``max_deliveries`` times with
    exponential backoff from ``defer_backoff`` seconds, doubling, capped at
    ``defer_backoff_cap``; then dead-letter."""

    max_deliveries: int = 25
    defer_backoff: float = 0.1
    defer_backoff_cap: float = 30.0

    def backoff(self, tries: int) -> float:
        """Delay before try ``tries + 1``."""
        return min(self.defer_backoff_cap, self.defer_backoff * 2.0 ** max(0, tries - 1))


def dumps_checked(event: Any, what: str) -> str:
    """:func:`dumps_event`, turning a payload that is not JSON into :class:`SerializationError`
    before any transaction starts."""
    try:
        return dumps_event(event)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON-serialisable: {exc}") from exc
