"""SQLite schema: schema.sql equals the migrations, versions are enforced, every table and
column is documented, every named query compiles, hot paths use their indexes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from perdure.errors import SchemaVersionError
from perdure.store.common.migrations import migrations_from_dir
from perdure.store.sqlite import SQLiteStore
from perdure.store.sqlite.migrations import (
    migrate,
    package_migrations,
    package_schema,
    schema_version,
    split_statements,
)
from perdure.store.sqlite.queries import Q


def connect(path: Path | str) -> sqlite3.Connection:
    """A plain autocommit connection."""
    return sqlite3.connect(str(path), isolation_level=None)


def normalized_schema(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    """sqlite_master without comments and whitespace differences."""

    def norm(sql: str | None) -> str:
        text = re.sub(r"--[^\n]*", "", sql or "")
        text = re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")")
        return text.replace(" ,", ",").strip()  # ALTER TABLE ... ADD COLUMN writes "x , y"

    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return sorted((t, n, tb, norm(sql)) for t, n, tb, sql in rows)


def test_applying_every_migration_yields_exactly_schema_sql(tmp_path: Path) -> None:
    from_schema, from_migrations = connect(tmp_path / "a.db"), connect(tmp_path / "b.db")
    latest = migrate(from_schema, now=1.0)
    assert migrate(from_migrations, now=1.0, create_from_schema=False) == latest
    assert normalized_schema(from_schema) == normalized_schema(from_migrations)
    assert len(normalized_schema(from_schema)) > 10
    for conn in (from_schema, from_migrations):
        assert schema_version(conn) == latest == package_migrations()[-1].version
        assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == latest


def test_newer_schema_version_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    SQLiteStore(path).close()
    with connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 0)")
    with pytest.raises(SchemaVersionError, match=r"version 999, newer than .* upgrade perdure"):
        SQLiteStore(path)
    with connect(path) as conn:  # untouched
        assert schema_version(conn) == 999


def test_an_older_database_gets_the_missing_migrations(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for m in package_migrations():
        (folder / m.name).write_text(m.sql)
    path = tmp_path / "old.db"
    SQLiteStore(path).close()  # at the packaged version
    latest = package_migrations()[-1].version
    (folder / f"{latest + 1:04d}_notes.sql").write_text(
        "-- a later release\nALTER TABLE instances ADD COLUMN note TEXT;\n"
        "CREATE TABLE notes (id INTEGER PRIMARY KEY);  -- trailing comment\n"
    )
    with connect(path) as conn:
        assert migrate(conn, now=2.0, migrations=migrations_from_dir(folder)) == latest + 1
        assert schema_version(conn) == latest + 1
        columns = [r[1] for r in conn.execute("PRAGMA table_info(instances)")]
        assert "note" in columns
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'notes'").fetchone()
    with pytest.raises(SchemaVersionError):  # this perdure does not know version latest + 1
        SQLiteStore(path)


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for m in package_migrations():
        (folder / m.name).write_text(m.sql)
    latest = package_migrations()[-1].version
    (folder / f"{latest + 1:04d}_broken.sql").write_text(
        "CREATE TABLE half (id INTEGER);\nALTER TABLE nowhere ADD COLUMN x TEXT;\n"
    )
    path = tmp_path / "db.db"
    SQLiteStore(path).close()
    with connect(path) as conn:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, now=2.0, migrations=migrations_from_dir(folder))
        assert schema_version(conn) == latest
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None


def test_migration_files_are_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0003_c.sql").write_text("CREATE TABLE c (x);")
    (tmp_path / "README.txt").write_text("ignored")
    with pytest.raises(ValueError, match="out of sequence"):
        migrations_from_dir(tmp_path)


def test_every_table_and_column_of_schema_sql_is_documented() -> None:
    undocumented = []
    for statement in split_statements(package_schema()):
        body = re.sub(r"^(\s*--[^\n]*\n)+", "", statement)
        if not statement.lstrip().startswith("--"):
            undocumented.append(body.splitlines()[0])
        if body.startswith("CREATE TABLE"):
            for line in body.splitlines()[1:-1]:
                if line.strip() and "--" not in line and not line.strip().startswith("PRIMARY KEY"):
                    undocumented.append(line.strip())
    assert undocumented == []


def test_every_named_query_compiles_against_the_schema(tmp_path: Path) -> None:
    conn = connect(tmp_path / "q.db")
    migrate(conn, now=1.0)
    for name in Q.names():
        sql = getattr(Q, name)
        names = re.findall(r":([a-z_]+)", sql)
        params: dict[str, object] | tuple[None, ...] = dict.fromkeys(names) if names else (None,) * sql.count("?")
        conn.execute(f"EXPLAIN {sql}", params)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("orchestration_candidates", "orchestration_messages_by_visible"),
        ("visible_messages_among", "orchestration_messages_by_instance"),
        ("instances_with_leases", "sqlite_autoindex_orchestration_leases_1"),
        ("activity_candidates", "activity_tasks_by_visible"),
        ("unlocked_tasks_of_instance", "activity_tasks_by_instance"),
        ("next_message_at", "orchestration_messages_by_visible"),
        ("history_from", "sqlite_autoindex_history_1"),
    ],
)
def test_hot_path_queries_use_their_index(tmp_path: Path, query: str, index: str) -> None:
    conn = connect(tmp_path / "plan.db")
    migrate(conn, now=1.0)
    sql = getattr(Q, query)
    params = dict.fromkeys(re.findall(r":([a-z_]+)", sql))
    plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert index in plan or "PRIMARY KEY" in plan, plan
