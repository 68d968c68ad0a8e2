"""PostgreSQL: the schema, its migrations, and opening a database from many workers at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from perdure.errors import SchemaVersionError
from perdure.store.base import InstanceQuery
from perdure.store.common.migrations import migrations_from_dir
from perdure.store.postgres import PostgresStore
from perdure.store.postgres import migrations as pg_migrations
from perdure.store.sqlite import migrations as sqlite_migrations
from tests import pgserver

CATALOG = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default,
               is_identity, identity_generation, is_generated, generation_expression
        FROM information_schema.columns WHERE table_schema = current_schema()
        ORDER BY table_name, ordinal_position""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() ORDER BY tablename, indexname""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2""",
}


@pytest.fixture
def empty_url() -> Iterator[str]:
    """A fresh database with no schema at all."""
    with pgserver.database_factory().database(migrated=False) as url:
        yield url


@pytest.fixture
def other_empty_url() -> Iterator[str]:
    """A second fresh database with no schema."""
    with pgserver.database_factory().database(migrated=False) as url:
        yield url


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the database's schema looks like, as comparable rows."""
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in CATALOG.items()}  # type: ignore[arg-type]


def test_applying_every_migration_yields_exactly_schema_sql(empty_url: str, other_empty_url: str) -> None:
    latest = pg_migrations.package_migrations()[-1].version
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert pg_migrations.migrate(conn, now=1.0) == latest
    with psycopg.connect(other_empty_url, autocommit=True) as conn:
        assert pg_migrations.migrate(conn, now=1.0, create_from_schema=False) == latest
    from_schema, from_migrations = catalog(empty_url), catalog(other_empty_url)
    assert from_schema["columns"] and from_schema["indexes"]
    assert from_schema == from_migrations


def test_migrations_are_numbered_like_the_sqlite_stores() -> None:
    pg = [m.name for m in pg_migrations.package_migrations()]
    assert pg == [m.name for m in sqlite_migrations.package_migrations()]
    assert pg[0] == "0001_initial.sql"


def test_workers_opening_a_new_database_at_once_migrate_it_once(empty_url: str) -> None:
    openers = 8
    barrier = threading.Barrier(openers, timeout=30)
    errors: list[BaseException] = []
    opened: list[PostgresStore] = []
    lock = threading.Lock()

    def open_store() -> None:
        barrier.wait()
        try:
            store = PostgresStore(empty_url, notify=False, pool_size=1)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)
            return
        with lock:
            opened.append(store)

    threads = [threading.Thread(target=open_store) for _ in range(openers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(opened) == openers
        with psycopg.connect(empty_url) as conn:
            assert conn.execute("SELECT version, name FROM schema_migrations").fetchall() == [
                (m.version, m.name) for m in pg_migrations.package_migrations()
            ]
        assert opened[-1].queue_stats().orchestration_depth == 0
    finally:
        for store in opened:
            store.close()


def test_a_newer_schema_is_refused(empty_url: str) -> None:
    PostgresStore(empty_url, notify=False).close()
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, '0099_future.sql', %s)", (time.time(),))
    with pytest.raises(SchemaVersionError, match="version 99"):
        PostgresStore(empty_url, notify=False)


def test_an_older_schema_gets_only_its_missing_migrations(empty_url: str, tmp_path: Path) -> None:
    PostgresStore(empty_url, notify=False).close()
    for migration in pg_migrations.package_migrations():
        (tmp_path / migration.name).write_text(migration.sql)
    latest = pg_migrations.package_migrations()[-1].version
    (tmp_path / f"{latest + 1:04d}_add_note.sql").write_text(
        "ALTER TABLE instances ADD COLUMN note TEXT;\nCREATE INDEX instances_by_note ON instances (note);\n"
    )
    later = migrations_from_dir(tmp_path)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert pg_migrations.migrate(conn, now=2.0, migrations=later) == latest + 1
        assert pg_migrations.migrate(conn, now=3.0, migrations=later) == latest + 1  # idempotent
        rows = conn.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()
        assert [v for v, _ in rows] == list(range(1, latest + 2)) and rows[-1][1] == 2.0
        assert conn.execute("SELECT note FROM instances").fetchall() == []


def test_a_failing_migration_changes_nothing(empty_url: str, tmp_path: Path) -> None:
    PostgresStore(empty_url, notify=False).close()
    for migration in pg_migrations.package_migrations():
        (tmp_path / migration.name).write_text(migration.sql)
    latest = pg_migrations.package_migrations()[-1].version
    (tmp_path / f"{latest + 1:04d}_broken.sql").write_text("ALTER TABLE instances ADD COLUMN note TEXT;\nSELECT 1/0;\n")
    with psycopg.connect(empty_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            pg_migrations.migrate(conn, now=2.0, migrations=migrations_from_dir(tmp_path))
        assert pg_migrations.schema_version(conn) == latest
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'instances'"
        ).fetchall()
        assert ("note",) not in columns


def test_migration_7_keys_the_list_by_last_update_on_the_second_of_the_rows_already_stored(empty_url: str) -> None:
    older = [m for m in pg_migrations.package_migrations() if m.version < 7]
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert pg_migrations.migrate(conn, now=1.0, migrations=older, create_from_schema=False) == 6
        conn.execute(
            "INSERT INTO instances (instance_id, name, status, created_at, last_updated_at, run_id) "
            "SELECT 'job-' || n, 'wf', 'COMPLETED', 1000.0, 1000.0 + n * 0.4, 'r' FROM generate_series(0, 9) AS n"
        )
        seventh = [m for m in pg_migrations.package_migrations() if m.version <= 7]
        assert pg_migrations.migrate(conn, now=2.0, migrations=seventh, create_from_schema=False) == 7
        rows = conn.execute("SELECT last_updated_at, last_updated_second FROM instances").fetchall()
        assert len(rows) == 10 and all(second == int(at // 1) for at, second in rows)
    store = PostgresStore(empty_url, notify=False)
    try:
        seen, cursor = [], None
        while True:
            page = store.list_instances(InstanceQuery(sort="updated", limit=3, cursor=cursor))
            seen += [r.instance_id for r in page.items]
            if (cursor := page.next_cursor) is None:
                break
    finally:
        store.close()
    assert seen == [f"job-{n}" for n in range(9, -1, -1)]
