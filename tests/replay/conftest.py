"""A store (both backends) holding the running instances of :mod:`tests.replay.fleet`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import perdure

from .apps import CALLS
from .fleet import populate


@pytest.fixture
def fleet_url(store_url: str) -> str:
    """The URL of a store populated by :func:`tests.replay.fleet.populate`, closed again."""
    store = perdure.open_store(store_url)
    try:
        populate(store)
    finally:
        store.close()
    return store_url


@pytest.fixture
def fleet(fleet_url: str) -> Iterator[perdure.Client]:
    """A client on the populated store, opened read-only as the replay check opens it."""
    store = perdure.open_store(fleet_url, create=False)
    yield perdure.Client(store)
    store.close()


@pytest.fixture(autouse=True)
def no_activity_calls() -> Iterator[None]:
    """Every test here ends with no activity of the changed apps called."""
    CALLS.clear()
    yield
    assert not CALLS, f"activities were called: {dict(CALLS)}"
