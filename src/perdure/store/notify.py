"""In-process wake-ups: a store signals topics when it commits work, and waiters (worker
dispatchers, ``Client.wait``) sleep until signalled instead of polling in a tight loop.

The PostgreSQL store feeds other processes' commits into the same notifier (LISTEN/NOTIFY)
as they happen; a SQLite store signals them at its next worker round, which sees that
another connection wrote the file (SQLite has no channel for them). Waiters always pass a
timeout and fall back to polling.

A commit that ends an instance that a client of this process started or waits for also
hands the instance's row, as the commit wrote it, to ``Client.wait`` (:class:`EndedRows`),
which then returns without reading it again.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perdure.store.base import InstanceRecord

ORCHESTRATIONS = "orchestrations"  # a message was enqueued or became visible
ACTIVITIES = "activities"  # an activity task was enqueued
INSTANCES = "instances"  # an instance ended (became terminal), was reopened or was purged (or its run replaced)
#: How many of the latest starts of this process :class:`EndedRows` expects to end (each
#: may hold an ended instance's row until its waiter takes it or it is forgotten).
STARTS_EXPECTED = 32


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
        #: Follows a topic that only waiters need (:meth:`following`), where the store's
        #: signals of other processes' commits come on demand (a PostgreSQL listener's
        #: ``follow``); None: they come always, or never.
        self.follow: Callable[[str], AbstractContextManager[None]] | None = None
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._waiters: dict[str, set[threading.Event]] = {}
        #: The rows of ended instances that waiters of this process expect.
        self.ended = EndedRows(lambda: self.version(INSTANCES))

    def version(self, topic: str) -> int:
        """The topic's current counter."""
        return self._versions.get(topic, 0)

    def following(self, topic: str) -> AbstractContextManager[None]:
        """Inside the block, other processes' signals of ``topic`` come here too (as far as
        the store signals them at all). Where they come on demand (:attr:`follow`), entering
        may subscribe, which moves the topic's version: a version read before the block
        then says nothing of what other processes did meanwhile, and one read inside it
        stays the same only while the subscription holds. ``Client.wait`` follows
        :data:`INSTANCES` (see there)."""
        return nullcontext() if self.follow is None else self.follow(topic)

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


class EndedRows:
    """The rows of instances that ended, for the waiters of this process that expect them.

    An instance is expected from just before a client of this process starts it
    (:meth:`expect`; only the latest :data:`STARTS_EXPECTED` such starts are kept), and
    while a waiter waits for it (:meth:`waiting`). A store committing a turn that ends an
    instance asks, inside the transaction, whether it is expected
    (:meth:`expected_among`), reads its row there if so (as the turn wrote it), and hands
    it over (:meth:`hand`) once the COMMIT succeeded, before it signals
    :data:`INSTANCES`. An instance not expected when the store asked is not handed over:
    its waiter is woken and reads it, as it would without this.

    A waiter takes a row handed over while it waited (the instance's state at a moment
    inside the wait), or one handed over before if no instance ended, was reopened or was
    purged since (then the row is still the instance's); otherwise it reads the instance."""

    def __init__(self, version: Callable[[], int]) -> None:
        self._version = version  # of INSTANCES
        self._lock = threading.Lock()
        self._started: OrderedDict[str, None] = OrderedDict()
        self._waiting: Counter[str] = Counter()
        self._rows: dict[str, tuple[InstanceRecord, int]] = {}  # with INSTANCES' version when handed

    def expect(self, instance_id: str) -> None:
        """Expect ``instance_id``, which a client of this process is about to start, to end:
        its waiter may come only after the end (the caller of the start can be slow to
        wake)."""
        with self._lock:
            self._started[instance_id] = None
            self._started.move_to_end(instance_id)
            while len(self._started) > STARTS_EXPECTED:
                self._forget(self._started.popitem(last=False)[0])

    @contextmanager
    def waiting(self, instance_id: str) -> Iterator[Callable[[], InstanceRecord | None]]:
        """Expect ``instance_id`` to end while inside the block (several waiters may);
        yields the function that returns its row if one was handed over that the waiter
        may take, else None. The start's expectation ends with the block."""
        with self._lock:
            self._waiting[instance_id] += 1
            since = self._version()

        def handed() -> InstanceRecord | None:
            with self._lock:
                record, version = self._rows.get(instance_id, (None, 0))
                if record is not None and (version >= since or self._version() == version + 1):
                    return record  # handed over while waiting, or nothing changed since its own signal
                return None

        try:
            yield handed
        finally:
            with self._lock:
                self._waiting[instance_id] -= 1
                self._started.pop(instance_id, None)
                self._forget(instance_id)

    def expected_among(self, instance_ids: Sequence[str]) -> list[str]:
        """Those of ``instance_ids`` that are expected."""
        if not instance_ids:  # most transactions end no instance
            return []
        with self._lock:
            return [i for i in instance_ids if i in self._started or self._waiting[i]]

    def hand(self, records: Iterable[InstanceRecord]) -> None:
        """Hand over the rows of ended instances (after the commit that ended them, before
        it is signalled), for as long as they are expected."""
        with self._lock:
            version = self._version()
            for record in records:
                self._rows[record.instance_id] = (record, version)
                self._forget(record.instance_id)  # no longer expected since the store asked

    def _forget(self, instance_id: str) -> None:
        """Drop ``instance_id``'s row unless it is still expected (the lock is held)."""
        if not self._waiting[instance_id]:
            del self._waiting[instance_id]
            if instance_id not in self._started:
                self._rows.pop(instance_id, None)
