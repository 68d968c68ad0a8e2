"""PostgreSQL: optimistic commits. A round's plain turns are written by one statement that
checks them itself, sent without waiting for anything; a turn that fails a check fails the
transaction, which runs again with the checks read first (the conformance suite pins each
check: lease, run and execution, terminal instance, consumed messages, handed-over tasks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from perdure.errors import InvalidInputError
from perdure.store.base import Outcome
from perdure.store.postgres import PostgresStore, orchestrations
from perdure.testing.conformance.helpers import lock_one, start, turn
from tests import pgserver


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database."""
    with pgserver.fresh_database() as url:
        yield url


def test_refused_optimistic_commits_leave_the_connection_usable(pg_url: str) -> None:
    """A refusal fails a transaction whose later statements the server skips, those
    statements included that the driver prepares at that moment: on the one connection of
    the pool, every later statement must still run (psycopg counting executions before it
    prepares a statement would take one the server skipped for prepared)."""
    store = PostgresStore(pg_url, pool_size=1, notify=False)
    try:
        for n in range(12):
            start(store, f"i{n}")
            item = lock_one(store, f"i{n}")
            forged = dataclasses.replace(turn(item), lease_token="not-the-token")
            assert store.commit_turns([forged]) == [Outcome.LEASE_LOST]
            assert store.commit_turns([turn(item)]) == [Outcome.OK]
    finally:
        store.close()


def test_only_statements_prepared_at_first_use_or_never(pg_url: str) -> None:
    with pytest.raises(InvalidInputError, match=r"prepare_threshold must be 0 .* or None"):
        PostgresStore(pg_url, prepare_threshold=5)
    store = PostgresStore(pg_url, prepare_threshold=None, pool_size=1, notify=False)
    try:
        start(store, "i1")
        assert store.commit_turns([turn(lock_one(store, "i1"))]) == [Outcome.OK]
        with store._db.pool.connection() as conn:  # the pool's one connection
            assert conn.execute("SELECT count(*) AS n FROM pg_prepared_statements").fetchone() == {"n": 0}
    finally:
        store.close()


def test_a_group_write_is_built_while_the_server_locks_its_instances(pg_url: str, monkeypatch) -> None:
    """The lock of the committing instances goes to the server before the group's statement
    is built (one round trip still: nothing is read in between), so the server takes it
    meanwhile; the turn then commits as before."""
    seen = []
    send = orchestrations.GroupWrite.send

    def probing_send(self, tx) -> None:
        seen.append(
            pgserver.locked_elsewhere(pg_url, "SELECT 1 FROM instances WHERE instance_id = 'i1' FOR UPDATE NOWAIT")
        )
        send(self, tx)

    store = PostgresStore(pg_url, pool_size=2, notify=False)
    try:
        start(store, "i1")
        item = lock_one(store, "i1")
        monkeypatch.setattr(orchestrations.GroupWrite, "send", probing_send)
        assert store.commit_turns([turn(item)]) == [Outcome.OK]
    finally:
        store.close()
    assert seen == [True]
