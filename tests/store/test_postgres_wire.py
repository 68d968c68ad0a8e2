"""The PostgreSQL store's statement pipeline over libpq (``store/postgres/wire.py``): what
it must keep from psycopg (adaptation, errors) and the prepared statements it keeps per
connection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from perdure.store.postgres.connection import GENERIC_SESSION, SERVER_SESSION, Database
from perdure.store.postgres.wire import Pipeline, Statement
from tests import pgserver


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database."""
    with pgserver.fresh_database() as url:
        yield url


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def _prepared_here(conn: psycopg.Connection) -> set[str]:
    pipeline = Pipeline(conn, prepare=False)
    try:
        return {r["name"] for r in pipeline.execute("SELECT name FROM pg_prepared_statements").fetchall()}
    finally:
        pipeline.close()


def test_a_query_becomes_numbered_placeholders_one_per_name() -> None:
    statement = Statement.of("SELECT %(a)s, %(b)s, %(a)s LIKE 'x%%'")
    assert statement.sql == b"SELECT $1, $2, $1 LIKE 'x%'"
    assert statement.names == ("a", "b")
    assert Statement.of("SELECT %(a)s, %(b)s, %(a)s LIKE 'x%%'") is statement


def test_values_adapt_as_through_psycopg_both_ways(conn: psycopg.Connection) -> None:
    pipeline = Pipeline(conn)
    try:
        row = pipeline.execute(
            "SELECT %(i)s::bigint AS i, %(f)s::float8 AS f, %(s)s::text AS s, %(n)s::text AS n,"
            " %(ids)s::text[] AS ids, %(b)s::bool AS b, %(big)s::text AS big",
            {"i": 2**40, "f": 0.1, "s": "é'\"\\", "n": None, "ids": ["a", 'b"c'], "b": True, "big": "x" * 3_000_000},
        ).fetchone()
    finally:
        pipeline.close()
    assert row == {
        "i": 2**40,
        "f": 0.1,
        "s": "é'\"\\",
        "n": None,
        "ids": ["a", 'b"c'],
        "b": True,
        "big": "x" * 3_000_000,
    }


def test_an_error_is_psycopgs_exception_and_the_rest_of_the_batch_is_skipped(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TEMP TABLE probe (n int)")
    pipeline = Pipeline(conn)
    try:
        pipeline.execute("BEGIN")
        pipeline.execute("INSERT INTO probe VALUES (1)")
        pipeline.execute("SELECT 1 / %(zero)s::int", {"zero": 0})
        after = pipeline.execute("INSERT INTO probe VALUES (2) RETURNING n")
        with pytest.raises(psycopg.errors.DivisionByZero):
            pipeline.sync()
        assert after.fetchall() == []
    finally:
        pipeline.close()
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM probe").fetchone() == (0,)


def test_a_statement_counts_as_prepared_only_once_the_server_prepared_it(conn: psycopg.Connection) -> None:
    """In a pipeline, the server skips every message after an error up to the Sync, the
    statement's Parse included: marking it prepared when sent would make every later use on
    this connection fail with "prepared statement does not exist"."""
    query = f"SELECT {time.monotonic_ns()} AS fresh"  # never prepared on this connection
    pipeline = Pipeline(conn)
    try:
        pipeline.execute("SELECT 1 / 0")
        pipeline.execute(query)
        with pytest.raises(psycopg.errors.DivisionByZero):
            pipeline.sync()
    finally:
        pipeline.close()
    pipeline = Pipeline(conn)
    try:
        assert pipeline.execute(query).fetchone() is not None
    finally:
        pipeline.close()


def test_a_failed_write_keeps_the_connections_prepared_statements(pg_url: str) -> None:
    """The rollback after a failed write goes around psycopg, whose ``execute("ROLLBACK")``
    deallocates every prepared statement of the session."""
    db = Database(pg_url, display="test", min_size=1, max_size=1)
    try:
        query = "SELECT %(n)s::int + 1 AS m"
        db.write("probe", lambda tx: tx.one(query, {"n": 1}), clock=time.time, before_commit=lambda tx: None)

        def failing(tx):
            tx.one(query, {"n": 1})
            tx.one("SELECT 1 / 0")

        with pytest.raises(Exception, match="division by zero"):
            db.write("probe", failing, clock=time.time, before_commit=lambda tx: None)
        with db.pool.connection() as conn:
            assert Statement.of(query).name.decode() in _prepared_here(conn)
    finally:
        db.close()


def test_statements_deallocated_behind_the_stores_back_are_prepared_again(pg_url: str) -> None:
    db = Database(pg_url, display="test", min_size=1, max_size=1)
    try:
        query = "SELECT %(n)s::int + 2 AS m"
        write = {"clock": time.time, "before_commit": lambda tx: None}
        assert db.write("probe", lambda tx: tx.one(query, {"n": 1}), **write)[0] == {"m": 3}
        with db.pool.connection() as conn:
            conn.execute("DEALLOCATE ALL")
        assert db.write("probe", lambda tx: tx.one(query, {"n": 2}), **write)[0] == {"m": 4}
        assert db.read("probe", lambda c: c.execute(query, {"n": 3}).fetchone()) == {"m": 5}
        # DISCARD ALL also resets the session's settings: a worker's transaction sets its own again.
        plans = "SELECT current_setting('plan_cache_mode') AS plans"
        assert db.write("round", lambda tx: tx.one(plans), generic_plans=True, **write)[0] == {
            "plans": "force_generic_plan"
        }
        with db.pool.connection() as conn:
            conn.execute("DISCARD ALL")
        assert db.write("round", lambda tx: tx.one(plans), generic_plans=True, **write)[0] == {
            "plans": "force_generic_plan"
        }
    finally:
        db.close()


def test_nothing_is_prepared_when_asked_not_to_or_past_the_limit_of_statements(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prepare_threshold=None`` (behind a transaction-pooling PgBouncer) prepares
    nothing; past :attr:`Statement.LIMIT` distinct queries, a new one is not prepared."""
    pipeline = Pipeline(conn, prepare=False)
    try:
        assert pipeline.execute("SELECT %(n)s::int * 7 AS m", {"n": 6}).fetchone() == {"m": 42}
    finally:
        pipeline.close()
    assert _prepared_here(conn) == set()
    monkeypatch.setattr(Statement, "LIMIT", len(Statement._compiled))
    query = f"SELECT {time.monotonic_ns()} AS one_off"
    assert Statement.of(query).name is None
    pipeline = Pipeline(conn)
    try:
        assert pipeline.execute(query).fetchone() is not None
    finally:
        pipeline.close()
    assert _prepared_here(conn) == set()


def test_statements_sent_ahead_run_before_the_sync(pg_url: str, conn: psycopg.Connection) -> None:
    """What :meth:`Pipeline.send_ahead` sends, the server runs while the caller queues the
    rest: here, the lock of a row is held by the time another session looks (without it,
    the statements wait in the client until the Sync)."""
    conn.execute("CREATE TABLE ahead (n int PRIMARY KEY)")
    conn.execute("INSERT INTO ahead VALUES (1)")
    pipeline = Pipeline(conn)
    try:
        pipeline.execute("BEGIN")
        locked = pipeline.execute("SELECT n FROM ahead WHERE n = %(n)s FOR UPDATE", {"n": 1})
        pipeline.send_ahead()
        assert pgserver.locked_elsewhere(pg_url, "SELECT n FROM ahead WHERE n = 1 FOR UPDATE NOWAIT")
        updated = pipeline.execute("UPDATE ahead SET n = 2 WHERE n = 1 RETURNING n")
        pipeline.execute("COMMIT")
        pipeline.sync()
        assert (locked.fetchall(), updated.fetchall()) == ([{"n": 1}], [{"n": 2}])
    finally:
        pipeline.close()
    assert conn.execute("SELECT n FROM ahead").fetchall() == [(2,)]


def test_a_session_keeps_the_plans_of_the_last_transaction_that_committed_on_it(pg_url: str) -> None:
    """A worker's transactions run with generic plans, the rest with the server's settings:
    a session-level setting, sent only when the session holds the other one; a setting
    rolled back with its transaction is sent again. The server's settings are those the
    database gives its sessions."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET plan_cache_mode = force_custom_plan")
    db = Database(pg_url, display="test", min_size=1, max_size=1)  # one session for all
    write = {"clock": time.time, "before_commit": lambda tx: None}
    mode = "SELECT current_setting('plan_cache_mode') AS plans, current_setting('enable_bitmapscan') AS bitmaps"
    generic, server = {"plans": "force_generic_plan", "bitmaps": "off"}, {"plans": "force_custom_plan", "bitmaps": "on"}

    def sent() -> dict[str, int]:  # times each setting ran (a statement without parameters runs its generic plan)
        with db.pool.connection() as conn:
            pipeline = Pipeline(conn, prepare=False)
            try:
                rows = pipeline.execute("SELECT name, generic_plans FROM pg_prepared_statements").fetchall()
            finally:
                pipeline.close()
        names = {
            Statement.of(GENERIC_SESSION[0]).name.decode(): "generic",
            Statement.of(SERVER_SESSION[0]).name.decode(): "server",
        }
        return {names[r["name"]]: r["generic_plans"] for r in rows if r["name"] in names}

    def failing(tx):
        tx.one("SELECT 1")  # read mid-transaction: the setting ran, not yet committed
        tx.one("SELECT 1 / 0")

    try:
        for _ in range(3):
            assert db.write("round", lambda tx: tx.one(mode), generic_plans=True, **write)[0] == generic
        assert sent() == {"generic": 1}
        assert db.read("list", lambda c: c.execute(mode).fetchone()) == server
        assert db.read("list", lambda c: c.execute(mode).fetchone()) == server
        assert db.write("start", lambda tx: tx.one(mode), **write)[0] == server
        assert sent() == {"generic": 1, "server": 1}
        with pytest.raises(Exception, match="division by zero"):
            db.write("round", failing, generic_plans=True, **write)
        assert db.read("list", lambda c: c.execute(mode).fetchone()) == server  # rolled back: still the server's
        assert db.write("round", lambda tx: tx.one(mode), generic_plans=True, **write)[0] == generic
        assert sent() == {"generic": 3, "server": 1}
    finally:
        db.close()
