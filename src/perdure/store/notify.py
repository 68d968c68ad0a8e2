"""In-process wake-ups: a store signals topics when it commits work, and waiters (worker
dispatchers, ``Client.wait``) sleep until signalled instead of polling in a tight loop.

Signals from other processes do not arrive here (SQLite has no channel for them); waiters
always pass a timeout and fall back to polling. The PostgreSQL store feeds LISTEN/NOTIFY
into the same notifier.
"""

from __future__ import annotations

import threading

ORCHESTRATIONS = "orchestrations"  # a message was enqueued or became visible
ACTIVITIES = "activities"  # an activity task was enqueued
INSTANCES = "instances"  # an instance ended (became terminal), was created or was purged


class Notifier:
    """Counters per topic plus one condition variable.

    A waiter reads :meth:`version`, checks the store, and if there was nothing to do calls
    :meth:`wait` with that version: a signal that arrived in between is not missed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}

    def version(self, topic: str) -> int:
        """The topic's current counter."""
        return self._versions.get(topic, 0)

    def notify(self, *topics: str) -> None:
        """Wake every waiter of ``topics``."""
        with self._cond:
            for topic in topics:
                self._versions[topic] = self._versions.get(topic, 0) + 1
            self._cond.notify_all()

    def wait(self, topics: tuple[str, ...], seen: dict[str, int], timeout: float) -> bool:
        """Block until one of ``topics`` moves past the version in ``seen`` or ``timeout``
        seconds pass; return True if signalled."""

        def moved() -> bool:
            return any(self._versions.get(t, 0) != seen.get(t, 0) for t in topics)

        with self._cond:
            return self._cond.wait_for(moved, timeout=max(0.0, timeout))

    def snapshot(self, topics: tuple[str, ...]) -> dict[str, int]:
        """The versions of ``topics`` now, for a later :meth:`wait`."""
        with self._cond:
            return {t: self._versions.get(t, 0) for t in topics}
