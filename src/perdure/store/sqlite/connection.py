"""SQLite connections: one write connection behind a lock, a pool of read connections.

SQLite admits one writer at a time, so the store funnels every write through a single
connection guarded by a :class:`threading.RLock` (waiting on a Python lock is cheaper and
fairer than SQLite's busy-retry loop); other processes are kept out by ``BEGIN IMMEDIATE``
and the busy timeout. In WAL mode readers never block the writer, so reads use a pool of
separate connections. An in-memory database is private to one connection, so there every
read shares the write connection and its lock (re-entrant: a read made on the thread that
is inside a write, as ``run_round``'s callback may, sees that transaction).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from perdure.errors import InvalidInputError, StoreUnavailableError

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL")
MEMORY = ":memory:"
#: Pages :meth:`Database.grow_wal` leaves short of the checkpoint threshold; also the page
#: cache it writes them through.
_GROWTH_MARGIN = 10

log = logging.getLogger("perdure.store")


class Database:
    """The connections to one SQLite database (a file path, or ``":memory:"``)."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        cached_statements: int = 256,
        read_pool_size: int = 8,
    ) -> None:
        mode = str(synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise InvalidInputError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}")
        self.path = path
        self.memory = path == MEMORY
        self.synchronous = mode
        self._busy_ms = int(float(busy_timeout) * 1000)
        self._cached_statements = cached_statements
        self._read_pool_size = read_pool_size
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False
        self._wal_grown = False
        self.write_lock = threading.RLock()
        self.writer = self._connect()
        if not self.memory:
            # WAL: readers do not block the writer, and a commit is one append + fsync.
            (journal,) = self.writer.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(journal).lower() != "wal":
                self.writer.close()
                raise StoreUnavailableError(f"cannot put {path!r} in WAL mode (journal mode is {journal})")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,  # autocommit: the store issues BEGIN / COMMIT itself
                check_same_thread=False,
                cached_statements=self._cached_statements,
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        return conn

    def check_open(self) -> None:
        """Raise :class:`StoreUnavailableError` once closed."""
        if self._closed:
            raise StoreUnavailableError(f"the store on {self.path!r} is closed")

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading, inside a read transaction (one consistent snapshot)."""
        self.check_open()
        if self.memory:
            with self.write_lock:
                yield self.writer
            return
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")
        except BaseException:
            conn.close()
            raise
        with self._pool_lock:
            if not self._closed and len(self._pool) < self._read_pool_size:
                self._pool.append(conn)
                return
        conn.close()

    def grow_wal(self) -> None:
        """Grow the WAL file to the size it keeps at work, once per :class:`Database`
        (later calls do nothing).

        SQLite checkpoints the WAL once it holds ``wal_autocheckpoint`` pages (1,000 by
        default), then writes it again from its start: from then on a commit writes over
        the file's pages, and its fsync flushes only them. Until the file has grown to that
        size, every commit appends to it, and its fsync must also make the file's new
        length durable, which costs about a quarter more per commit on this project's
        test VM. The last connection to close removes the WAL, so every process that opens
        the store starts with an empty one.

        Here a transaction writes that many pages (a row of zeros, with the page cache
        made small so that its pages go to the WAL before the end) and is rolled back:
        nothing of it is kept but the file's length, made durable by one empty commit
        (``PRAGMA user_version`` set to its own value). About 10 ms. Skipped when the WAL
        is that large already (another connection keeps it), when commits are not synced
        (``synchronous`` below FULL), for an in-memory database, and if the checkpoint is
        turned off."""
        if self._wal_grown:  # every round asks
            return
        with self.write_lock:
            if self._wal_grown or self.memory or self.synchronous != "FULL" or self._closed:
                return
            self._wal_grown = True
            conn = self.writer
            try:
                (threshold,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
                (page_size,) = conn.execute("PRAGMA page_size").fetchone()
                pages = threshold - _GROWTH_MARGIN
                if pages <= 0 or _size(f"{self.path}-wal") >= pages * (24 + page_size):
                    return
                (cache_size,) = conn.execute("PRAGMA cache_size").fetchone()
                conn.execute(f"PRAGMA cache_size = {_GROWTH_MARGIN}")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.execute("INSERT INTO schema_migrations VALUES (-1, zeroblob(?), 0)", (pages * page_size,))
                    finally:
                        conn.execute("ROLLBACK")
                finally:
                    conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                conn.execute(f"PRAGMA user_version = {int(version)}")
            except sqlite3.Error as exc:
                # Only a cost, never a fault: a store that cannot be written fails its own writes.
                log.debug("the WAL of %s was not grown: %s", self.path, exc)

    def close(self) -> None:
        """Close every connection. Idempotent; waits for a write in progress."""
        with self.write_lock:
            if self._closed:
                return
            self._closed = True
            with self._pool_lock:
                pool, self._pool = self._pool, []
            for conn in pool:
                conn.close()
            self.writer.close()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
