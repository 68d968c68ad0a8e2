"""The store conformance suite (``perdure.testing.conformance``) run against PostgreSQL.

Each store the suite opens gets its own fresh database, cloned from a migrated template
(see ``tests/pgserver.py`` for which server is used).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from perdure.store.base import Store
from perdure.store.postgres import PostgresStore
from perdure.testing.conformance import *  # noqa: F403  (the shared tests and fixtures)
from perdure.testing.faults import FakeClock
from tests import pgserver


@pytest.fixture(params=["postgres"])
def make_store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Callable[..., Store]]:
    """Fresh PostgreSQL stores on the test's fake clock, each in its own database."""
    with ExitStack() as stack:

        def make(**options: Any) -> Store:
            url = stack.enter_context(pgserver.fresh_database())
            store = PostgresStore(url, clock=clock, **options)
            stack.callback(store.close)
            return store

        yield make
