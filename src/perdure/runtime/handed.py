"""Handed starts: instances a worker locked in the transaction that created them.

A plain ``Client.start`` in a process whose running worker serves the orchestration on the
same store object creates the instance and locks it for that worker in one transaction
(:meth:`perdure.store.base.Store.create_and_lock`), and hands the locked instance here. The
worker's next round runs its first turn at once: no round of its own to find and lock the
instance, and no wait for a signal. Unlike an eager start, no orchestration code runs in
the caller's thread.

A start is handed over only while one of the worker's dispatch loops waits for work, and
at most one per waiting loop: a latency gain for a worker with nothing to do. A busy worker
takes new instances in batches with its rounds, and starts made meanwhile are queued as
usual, for whichever worker of the fleet is free.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from perdure.store.base import OrchestrationWorkItem


class HandedStarts:
    """The locked instances handed to a worker by starts of its process, until one of its
    rounds takes them. Thread-safe."""

    def __init__(self) -> None:
        self._items: list[OrchestrationWorkItem] = []
        self._reserved = 0
        self._waiting = 0  # dispatch loops waiting for work
        self._lock = threading.Lock()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a dispatch loop's wait for work: starts may be handed over meanwhile."""
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    @property
    def waiting_loops(self) -> int:
        """How many dispatch loops wait for work now."""
        return self._waiting

    def reserve(self) -> bool:
        """Make room for one start if a dispatch loop waits for work and has not been handed
        one yet; every reservation ends with :meth:`put`."""
        with self._lock:
            if len(self._items) + self._reserved >= self._waiting:
                return False
            self._reserved += 1
            return True

    def put(self, items: list[OrchestrationWorkItem]) -> None:
        """End a reservation with the instances it locked (none: the start was queued, or
        failed)."""
        with self._lock:
            self._reserved -= 1
            self._items.extend(items)

    def take(self) -> list[OrchestrationWorkItem]:
        """Every instance handed over so far (for a round to run)."""
        with self._lock:
            items, self._items = self._items, []
            return items
