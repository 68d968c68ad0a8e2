"""The state shared by the statements of one write transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from perdure.core.history import loads_event
from perdure.store.base import QueuedMessage


@dataclass(slots=True)
class Tx:
    """One write transaction: its connection, its single reading of the clock (every
    timestamp written by the transaction uses it), and the notifier topics to signal once
    it has committed."""

    conn: sqlite3.Connection
    now: float
    topics: set[str] = field(default_factory=set)
    #: Inside a worker round (and only there): what the round holds in memory instead of
    #: writing, because its own later steps consume it in the same transaction. ``None``:
    #: every step writes its rows (the lock and the commit are separate transactions).
    round: RoundState | None = None

    def notify(self, *topics: str) -> None:
        """Signal ``topics`` after the commit (never before: a woken waiter must see the rows)."""
        self.topics.update(topics)


@dataclass(slots=True)
class RoundState:
    """A round's unwritten state. No other writer can come between a round's steps, so

    - ``leases``: an instance the round locks and commits needs no lease row (one is
      written only for a turn that keeps its lease, or an instance left uncommitted);
    - ``completions``: an activity outcome recorded by the round for an instance the round
      then locks is handed to its turn directly, never queued as a message row.

    What is left when the round's steps are done is written as rows by ``finish_round``.
    """

    leases: dict[str, RoundLease] = field(default_factory=dict)
    completions: dict[str, list[QueuedMessage]] = field(default_factory=dict)
    next_id: int = -1  # handed-out completions have negative ids: no row has one

    def keep(self, instance_id: str, execution_id: int, text: str, now: float) -> None:
        """Keep a completion (its stored JSON ``text``) for its instance's turn."""
        self.completions.setdefault(instance_id, []).append(self.message(instance_id, execution_id, text, now))

    def message(self, instance_id: str, execution_id: int, text: str, now: float) -> QueuedMessage:
        """A message handed to a turn without a row. Its event is decoded from its stored
        JSON ``text``, as a queued one would be: the turn sees exactly the value its replay
        will."""
        message = QueuedMessage(
            self.next_id, instance_id, execution_id, loads_event(text), now, now, 1, event_json=text
        )
        self.next_id -= 1
        return message


@dataclass(frozen=True, slots=True)
class RoundLease:
    """A lease taken by a round's transaction on an instance that had no lease row: the lock's
    reading of the instance row, the ids of the messages it delivered and the completions
    it handed out directly (by id)."""

    owner: str
    token: str
    expires_at: float
    lease_seconds: float
    row: Any  # the instance row (sqlite3.Row) as the lock read it
    delivered: frozenset[int]
    direct: dict[int, QueuedMessage]
