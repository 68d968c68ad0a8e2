"""Schema creation and migration for the SQLite store.

``schema.sql`` is the complete current schema; ``migrations/NNNN_name.sql`` are the steps
from one version to the next. A fresh database is created from ``schema.sql`` and stamped
with the latest version; an older one gets its missing migrations, in order, in one
transaction; a newer one is refused with :class:`SchemaVersionError`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from perdure.errors import SchemaVersionError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def package_schema() -> str:
    """The text of the packaged ``schema.sql``."""
    return resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")


def package_migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    folder = resources.files(__package__).joinpath("migrations")
    return load_migrations(
        (entry.name, entry.read_text(encoding="utf-8")) for entry in folder.iterdir() if entry.is_file()
    )


def load_migrations(files: Iterable[tuple[str, str]]) -> list[Migration]:
    """Build the ordered migration list from ``(file name, text)`` pairs; other file names
    are ignored, gaps and duplicate numbers are an error."""
    found: list[Migration] = []
    for name, text in files:
        match = _MIGRATION_NAME.match(name)
        if match:
            found.append(Migration(int(match.group(1)), name, text))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(f"migration {migration.name} is out of sequence; expected number {expected:04d}")
    return found


def migrations_from_dir(path: str | Path) -> list[Migration]:
    """Load migrations from a directory (tests use this to simulate later versions)."""
    folder = Path(path)
    return load_migrations((p.name, p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.is_file())


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
