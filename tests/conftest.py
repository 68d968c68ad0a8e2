"""Shared fixtures: real stores, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import perdure


@pytest.fixture
def store(tmp_path) -> Iterator[perdure.Store]:
    """A fresh SQLite store in a temporary file."""
    s = perdure.open_store(f"sqlite:///{tmp_path / 'perdure.db'}")
    yield s
    s.close()


@pytest.fixture
def client(store) -> perdure.Client:
    """A client on the test's store."""
    return perdure.Client(store)
