"""Shared fixtures: real stores, one per test, on SQLite and on PostgreSQL.

``store_url`` / ``store`` are parametrized over both backends, so every scenario test runs
twice (ids ``[sqlite]`` and ``[postgres]``). PostgreSQL comes from ``tests/pgserver.py``:
``$PERDURE_TEST_POSTGRES_URL``, else 127.0.0.1:5432 if it answers, else a throwaway server;
each test gets a fresh database cloned from a migrated template.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import perdure

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of a fresh, empty store of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'perdure.db'}"
        return
    from tests import pgserver

    with pgserver.fresh_database() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[perdure.Store]:
    """A fresh store of each backend."""
    s = perdure.open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def client(store) -> perdure.Client:
    """A client on the test's store."""
    return perdure.Client(store)
