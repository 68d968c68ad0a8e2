"""In-process wake-ups: a store signals topics when it commits work, and waiters (worker
dispatchers, ``Client.wait``) sleep until signalled instead of polling in a tight loop.

The PostgreSQL store feeds other processes' commits into the same notifier (LISTEN/NOTIFY)
as they happen; a SQLite store signals them at its next worker round, which sees that
another connection wrote the file (SQLite has no channel for them). Waiters always pass a
timeout and fall back to polling.
"""

from __future__ import annotations

import threading

ORCHESTRATIONS = "orchestrations"  # a message was enqueued or became visible
ACTIVITIES = "activities"  # an activity task was enqueued
INSTANCES = "instances"  # an instance ended (became terminal), was reopened or was purged


class Notifier:
    """Counters per topic, and the waiters of each topic.

    A waiter reads :meth:`snapshot`, checks the store, and if there was nothing to do calls
    :meth:`wait` with that snapshot: a signal that arrived in between is not missed. A
    signal wakes only the waiters of its topics: a commit that ends an instance does not
    wake the worker's dispatch loops to contend for the GIL with the client it is for.
    """

    def __init__(self) -> None:
        #: Whether other processes' commits are signalled here too (a PostgreSQL store
        #: that listens, as they happen; a SQLite store, by its next worker round): a worker
        #: may then rely on signals, and ``poll_interval``, to learn of new work while it
        #: is busy.
        self.every_process = False
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._waiters: dict[str, set[threading.Event]] = {}

    def version(self, topic: str) -> int:
        """The topic's current counter."""
        return self._versions.get(topic, 0)

    def notify(self, *topics: str) -> None:
        """Wake every waiter of ``topics``."""
        with self._lock:
            for topic in topics:
                self._versions[topic] = self._versions.get(topic, 0) + 1
                for waiter in self._waiters.get(topic, ()):
                    waiter.set()

    def wait(self, topics: tuple[str, ...], seen: dict[str, int], timeout: float) -> bool:
        """Block until one of ``topics`` moves past the version in ``seen`` or ``timeout``
        seconds pass; return True if signalled."""
        waiter = threading.Event()
        with self._lock:
            if any(self._versions.get(t, 0) != seen.get(t, 0) for t in topics):
                return True
            for topic in topics:
                self._waiters.setdefault(topic, set()).add(waiter)
        try:
            return waiter.wait(max(0.0, timeout))
        finally:
            with self._lock:
                for topic in topics:
                    self._waiters[topic].discard(waiter)

    def snapshot(self, topics: tuple[str, ...]) -> dict[str, int]:
        """The versions of ``topics`` now, for a later :meth:`wait`."""
        with self._lock:
            return {t: self._versions.get(t, 0) for t in topics}
