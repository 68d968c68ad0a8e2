"""The WAL a workload's measured part writes on PostgreSQL: the server's write-ahead log
position (``pg_current_wal_lsn``) read as the part starts and as it ends.

The position is the whole server's: a run must have the server to itself. A checkpoint
during the part adds the full-page images of the pages first written after it, so single
runs vary; compare medians of several.
"""

from __future__ import annotations

from typing import Any


class WalMeter:
    """Started and stopped around a workload's measured part; ``stop`` returns the bytes of
    WAL written meanwhile (None on SQLite)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.started: str | None = None

    def _one(self, query: str, *params: Any) -> Any:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchone()[0]

    def start(self) -> None:
        """Read the starting position (PostgreSQL only)."""
        if self.url.startswith("postgresql"):
            self.started = str(self._one("SELECT pg_current_wal_lsn()"))

    def stop(self) -> float | None:
        """The bytes of WAL written since :meth:`start` (None on SQLite)."""
        if self.started is None:
            return None
        return float(self._one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", self.started))
