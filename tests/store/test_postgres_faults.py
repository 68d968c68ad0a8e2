"""PostgreSQL: connection faults are retried when nothing can have been committed, and
reported when the outcome of a COMMIT is unknown."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial

import psycopg
import pytest

import perdure
from perdure.errors import InvalidInputError, StoreError, StoreUnavailableError
from perdure.store.base import InstanceQuery, NewInstance
from perdure.store.postgres import PostgresStore
from perdure.store.postgres.connection import Database, Tx, is_transient
from perdure.testing.conformance.helpers import running
from tests import pgserver


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database."""
    with pgserver.fresh_database() as url:
        yield url


def terminate_others(url: str, where: str = "true") -> int:
    """Terminate the other sessions on the database of ``url`` (and wait until they are gone)."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
        ).fetchall()
    return len(rows)


def test_operations_survive_their_connections_being_killed(pg_url: str) -> None:
    store = PostgresStore(pg_url, pool_size=(3, 3))
    try:
        running(store, "i1")
        for n in range(3):
            assert terminate_others(pg_url) >= 1
            store.create_instance(NewInstance(f"j{n}", "wf", None))  # a write, retried
            assert store.get_instance("i1") is not None  # a read, retried
        assert len(store.list_instances(InstanceQuery()).items) == 4
    finally:
        store.close()


def test_a_connection_lost_during_commit_is_reported_and_not_retried(pg_url: str) -> None:
    store = PostgresStore(pg_url, notify=False)
    calls: list[str] = []

    def kill_my_transaction(point: str) -> None:
        calls.append(point)
        assert terminate_others(pg_url, "state = 'idle in transaction'") == 1

    store.fault_hook = kill_my_transaction
    try:
        with pytest.raises(StoreUnavailableError, match="outcome is unknown"):
            store.create_instance(NewInstance("i1", "wf", None))
        assert calls == ["create_instance:inside"]  # not retried
        store.fault_hook = None
        assert store.get_instance("i1") is None  # here the server had rolled it back
        store.create_instance(NewInstance("i1", "wf", None))  # the store is still usable
    finally:
        store.close()


def _raise_once(sqlstate: str, attempts: list[int]) -> Callable[[Tx], None]:
    """A transaction body that records a row, then, on its first attempt only, sends (without
    reading its result) a statement the server fails with ``sqlstate``: that error reaches
    the client only with the COMMIT that follows it in the pipeline."""

    def body(tx: Tx) -> None:
        attempts.append(1)
        tx.run("INSERT INTO workers_probe VALUES (%(n)s)", {"n": len(attempts)})
        if len(attempts) == 1:
            tx.run(f"DO $$BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END$$")

    return body


@pytest.mark.parametrize(("sqlstate", "retried"), [("40P01", True), ("22012", False)])
def test_a_server_error_that_surfaces_at_commit_rolled_back_and_is_not_an_unknown_outcome(
    pg_url: str, sqlstate: str, retried: bool
) -> None:
    """The error of a statement sent before COMMIT arrives with the COMMIT's reply. The
    server rolled the transaction back, so the outcome is known: a deadlock is retried, and
    any other error fails the call; neither is reported as an unknown outcome."""
    db = Database(pg_url, display="test")
    try:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("CREATE TABLE workers_probe (n int)")
        attempts: list[int] = []
        write = partial(db.write, clock=time.time, before_commit=lambda tx: None)
        if retried:
            write("probe", _raise_once(sqlstate, attempts))
        else:
            with pytest.raises(StoreError, match="probe failed") as caught:
                write("probe", _raise_once(sqlstate, attempts))
            assert not isinstance(caught.value, StoreUnavailableError)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            rows = [r[0] for r in admin.execute("SELECT n FROM workers_probe").fetchall()]
        assert (len(attempts), rows) == ((2, [2]) if retried else (1, []))
    finally:
        db.close()


def test_an_unreachable_server_fails_fast_at_open() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="cannot connect"):
        perdure.open_store("postgresql://nobody:secret@127.0.0.1:1/nothing", connect_timeout=1)
    assert time.monotonic() - started < 5


def test_a_closed_store_refuses_work(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.close()
    store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.get_instance("i1")
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.create_instance(NewInstance("i1", "wf", None))


def test_transient_faults_are_told_apart() -> None:
    assert is_transient(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert is_transient(psycopg.errors.AdminShutdown())
    assert is_transient(psycopg.errors.DeadlockDetected())
    assert not is_transient(psycopg.errors.QueryCanceled())
    assert not is_transient(psycopg.errors.UniqueViolation())
    assert not is_transient(ValueError())


def test_open_store_accepts_both_schemes_and_hides_the_password(pg_url: str) -> None:
    for scheme in ("postgresql", "postgres"):
        url = pg_url.replace("postgresql://", f"{scheme}://", 1)
        store = perdure.open_store(url, pool_size=(0, 2), notify=False)
        try:
            assert isinstance(store, PostgresStore) and store.url == url
            assert store.get_instance("nothing") is None
        finally:
            store.close()
    from perdure.store.postgres.store import public_url

    assert public_url("postgresql://me:secret@db.example:5433/x?sslmode=require") == (
        "postgresql://me@db.example:5433/x?sslmode=require"
    )
    with pytest.raises(InvalidInputError):
        PostgresStore(pg_url, pool_size=(3, 1))
    with pytest.raises(InvalidInputError):
        PostgresStore(pg_url, max_deliveries=0)


def test_an_eager_start_retried_after_a_transient_fault_records_its_turn_once(pg_url: str) -> None:
    """A deadlock inside ``create_and_run`` makes the store run its transaction again. The
    turn (and its local activity) ran before the transaction opened (invariant 10), so it
    runs once, and its commit is written once."""
    app = perdure.App()
    runs: list[int] = []

    @app.activity(local=True)
    def step(x: int) -> int:
        runs.append(x)
        return x + 1

    @app.orchestration
    async def flow(ctx: perdure.OrchestrationContext, x: int) -> int:
        y = await ctx.call_activity(step, x)
        return await ctx.wait_for_event("go") + y

    faults = 0

    def deadlock_once(point: str) -> None:
        nonlocal faults
        if point == "create_and_run:inside" and not faults:
            faults += 1
            raise psycopg.errors.DeadlockDetected("deadlock detected (injected)")

    store = PostgresStore(pg_url)
    store.fault_hook = deadlock_once
    client = perdure.Client(store)
    try:
        with perdure.Worker(app, store, poll_interval=0.05) as worker:
            iid = client.start(flow, 1, eager=True)
            assert faults == 1 and runs == [1]  # run outside the transaction: once
            client.raise_event(iid, "go", 40)
            assert client.wait(iid, timeout=20).output == 42
        history = client.get(iid, history=True).history
        assert [type(e).__name__ for e in history].count("ActivityCompleted") == 1
        assert worker.stats()["eager_starts"] == 1
    finally:
        store.close()
