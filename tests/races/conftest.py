"""Fixtures of the race tests: a store of each backend on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import perdure
from perdure.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock of the test's store."""
    return FakeClock()


@pytest.fixture
def clocked_store(store_url: str, clock: FakeClock) -> Iterator[perdure.Store]:
    """A fresh store of each backend whose time moves only with ``clock``."""
    store = perdure.open_store(store_url, clock=clock)
    yield store
    store.close()


@pytest.fixture
def clocked_client(clocked_store: perdure.Store) -> perdure.Client:
    """A client on :func:`clocked_store`."""
    return perdure.Client(clocked_store)
