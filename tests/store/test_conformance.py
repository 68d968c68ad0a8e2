"""The store conformance suite (``perdure.testing.conformance``) run against SQLite, on a
temporary file and in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from perdure.store.base import Store
from perdure.store.sqlite import SQLiteStore
from perdure.testing.conformance import *  # noqa: F403  (the shared tests and fixtures)
from perdure.testing.faults import FakeClock


@pytest.fixture(params=["sqlite", "sqlite-memory"])
def make_store(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path
) -> Iterator[Callable[..., Store]]:
    """Fresh SQLite stores on the test's fake clock."""
    opened: list[SQLiteStore] = []

    def make(**options: Any) -> Store:
        path = (
            ":memory:" if request.param == "sqlite-memory" else tmp_path / f"store{len(opened)}.db"
        )
        store = SQLiteStore(path, clock=clock, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
