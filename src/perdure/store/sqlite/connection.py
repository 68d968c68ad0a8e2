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

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from perdure.errors import InvalidInputError, StoreUnavailableError

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL")
MEMORY = ":memory:"


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
