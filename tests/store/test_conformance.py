"""The store conformance suite (``perdure.testing.conformance``) run against every store:
SQLite on a temporary file and in memory, and PostgreSQL (each store the suite opens gets
its own fresh database cloned from a migrated template; see ``tests/pgserver.py``), the
latter a second time writing a group of one turn as any group (``write_plain_turns``
instead of ``write_one_turn``), so that every check runs through both statements."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from perdure.store.base import Store
from perdure.store.sqlite import SQLiteStore
from perdure.testing.conformance import *  # noqa: F403  (the shared tests and fixtures)
from perdure.testing.conformance.dashboard import *  # noqa: F403
from perdure.testing.faults import FakeClock


@pytest.fixture(params=["sqlite", "sqlite-memory", "postgres", "postgres-group-statement"])
def make_store(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Store]]:
    """Fresh stores of one backend on the test's fake clock."""
    if request.param == "postgres-group-statement":
        from perdure.store.postgres import orchestrations

        monkeypatch.setattr(orchestrations, "ONE_TURN_STATEMENT", False)
    with ExitStack() as stack:
        opened = 0

        def make(**options: Any) -> Store:
            nonlocal opened
            opened += 1
            store: Store
            if request.param.startswith("postgres"):
                from perdure.store.postgres import PostgresStore
                from tests import pgserver

                store = PostgresStore(stack.enter_context(pgserver.fresh_database()), clock=clock, **options)
            else:
                path = ":memory:" if request.param == "sqlite-memory" else tmp_path / f"store{opened}.db"
                store = SQLiteStore(path, clock=clock, **options)
            stack.callback(store.close)
            return store

        yield make
