"""Schema creation and migration for the SQLite store.

``schema.sql`` is the complete current schema; ``migrations/NNNN_name.sql`` are the steps
from one version to the next. A fresh database is created from ``schema.sql`` and stamped
with the latest version; an older one gets its missing migrations, in order, in one
transaction; a newer one is refused with :class:`SchemaVersionError`.
"""

from __future__ import annotations

import sqlite3

from perdure.errors import SchemaVersionError
from perdure.store.common import migrations as migration_files
from perdure.store.common.migrations import Migration


def package_schema() -> str:
    """The text of this backend's ``schema.sql``."""
    return migration_files.package_schema(__package__)


def package_migrations() -> list[Migration]:
    """This backend's migrations, in version order."""
    return migration_files.package_migrations(__package__)


def split_statements(script: str) -> list[str]:
    """Split an SQL script into single statements (comments kept with the statement they
    precede), so that a whole migration can run inside one explicit transaction;
    ``executescript`` would commit first."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = "\n".join(ln for ln in buffer.splitlines() if not ln.strip().startswith("--")).strip()
    if leftover:
        raise ValueError(f"SQL script ends with an incomplete statement: {leftover[:80]!r}")
    return statements


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version: 0 if perdure never created it."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if not exists:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def migrate(
    conn: sqlite3.Connection,
    *,
    now: float,
    migrations: list[Migration] | None = None,
    schema: str | None = None,
    create_from_schema: bool = True,
) -> int:
    """Bring the database on ``conn`` (autocommit mode) to the latest version and return it.

    ``migrations`` and ``schema`` default to the packaged ones. A fresh database is created
    from the schema unless ``create_from_schema`` is false, in which case every migration
    runs (the schema test compares both paths).

    Everything happens in one ``BEGIN IMMEDIATE`` transaction, so concurrent openers of a new
    database serialize and the second one finds the work done.
    """
    migrations = package_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        if current > latest:
            raise SchemaVersionError(
                f"the database schema is version {current}, newer than the version {latest} this "
                f"perdure understands; upgrade perdure to open it"
            )
        if current < latest:
            if current == 0 and create_from_schema:
                for statement in split_statements(package_schema() if schema is None else schema):
                    conn.execute(statement)
                pending = migrations
            else:
                pending = [m for m in migrations if m.version > current]
                for migration in pending:
                    for statement in split_statements(migration.sql):
                        conn.execute(statement)
            conn.executemany(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                [(m.version, m.name, now) for m in pending],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return latest
