"""Schema creation and migration for the PostgreSQL store.

``schema.sql`` is the complete current schema; ``migrations/NNNN_name.sql`` are the steps
from one version to the next (the numbering of the SQLite store). A fresh database is
created from ``schema.sql`` and stamped with the latest version; an older one gets its
missing migrations, in order; a newer one is refused with :class:`SchemaVersionError`.

Many workers may open a new database at once: the whole migration runs in one transaction
(PostgreSQL's DDL is transactional) under an advisory lock, so one opener migrates and
the others, once the lock is theirs, find the work done.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from perdure.errors import SchemaVersionError
from perdure.store.common import migrations as migration_files
from perdure.store.common.migrations import Migration

MIGRATION_LOCK = 7_250_417_000  # advisory lock key held while migrating


def package_schema() -> str:
    """The text of this backend's ``schema.sql``."""
    return migration_files.package_schema(__package__)


def package_migrations() -> list[Migration]:
    """This backend's migrations, in version order."""
    return migration_files.package_migrations(__package__)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version: 0 if perdure never created it. Looks in the
    connection's ``search_path``."""
    with conn.cursor(row_factory=tuple_row) as cur:
        (exists,) = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone() or (False,)
        if not exists:
            return 0
        (version,) = cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone() or (0,)
    return int(version)


def _check(current: int, latest: int) -> None:
    if current > latest:
        raise SchemaVersionError(
            f"the database schema is version {current}, newer than the version {latest} this "
            f"perdure understands; upgrade perdure to open it"
        )


def migrate(
    conn: psycopg.Connection[Any],
    *,
    now: float,
    migrations: list[Migration] | None = None,
    schema: str | None = None,
    create_from_schema: bool = True,
) -> int:
    """Bring the database on ``conn`` (autocommit mode, no transaction open) to the latest
    version and return it.

    ``migrations`` and ``schema`` default to the packaged ones. A fresh database is created
    from the schema unless ``create_from_schema`` is false, in which case every migration
    runs (the schema test compares both paths).
    """
    if schema is None and create_from_schema:
        schema = package_schema()
    migrations = package_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    current = schema_version(conn)  # without the lock: the common case is "up to date"
    _check(current, latest)
    if current == latest:
        return latest
    # A session-level lock taken *before* the transaction: a backend reads the catalog
    # changes committed by others only when a transaction starts, so the version must be
    # read again in a transaction begun after the previous migrator committed.
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        with conn.transaction():
            current = schema_version(conn)
            _check(current, latest)
            if current < latest:
                _apply(conn, current, migrations, schema if create_from_schema else None, now)
    finally:
        if not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return latest


def _apply(
    conn: psycopg.Connection[Any],
    current: int,
    migrations: list[Migration],
    schema: str | None,
    now: float,
) -> None:
    """Create the schema (a fresh database, unless ``schema`` is None) or run the pending
    migrations; record them."""
    # Scripts of many statements: never prepared (the pool prepares every statement).
    if current == 0 and schema is not None:
        conn.execute(schema, prepare=False)  # type: ignore[arg-type]
        pending = migrations
    else:
        pending = [m for m in migrations if m.version > current]
        for migration in pending:
            conn.execute(migration.sql, prepare=False)  # type: ignore[arg-type]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
            [(m.version, m.name, now) for m in pending],
        )
