"""The SQLite store: stdlib ``sqlite3``, WAL journal, one writer, many readers.

Open it with ``perdure.open_store("sqlite:///perdure.db")`` or ``SQLiteStore(path, **options)``.
SQL lives in ``schema.sql`` (the documented schema), ``migrations/`` and ``queries.sql``.
"""

from perdure.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
