"""The conformance suite every :class:`~perdure.store.base.Store` must pass.

Use it from a test module that provides one fixture, ``make_store``: a callable
``make_store(**options) -> Store`` returning a fresh, empty store whose clock is the
``clock`` fixture defined here; ``options`` may hold ``max_deliveries``, ``defer_backoff`` and
``defer_backoff_cap``. Then import the tests::

    from perdure.testing.conformance import *  # noqa: F403

    @pytest.fixture(params=["mybackend"])
    def make_store(request, clock): ...

The tests drive the store directly (no executor): they lock work, build turn commits by
hand and check the contracts of ``perdure.store.base`` with a fake clock. Nothing here may
depend on one backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from perdure.store.base import Store
from perdure.testing.conformance import (
    activities,
    eager,
    fleet,
    lifecycle,
    reads,
    reopen,
    robustness,
    rounds,
    routing,
)
from perdure.testing.faults import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock every store of the test reads."""
    return FakeClock()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Iterator[Store]:
    """A fresh store with default options."""
    yield make_store()


# Every test of the submodules is exported, so that a star import collects all of them
# (a hand-kept list could silently leave one out).
_TESTS = {
    name: obj
    for module in (lifecycle, routing, activities, rounds, eager, reads, fleet, robustness, reopen)
    for name, obj in vars(module).items()
    if name.startswith("test_") and callable(obj)
}
globals().update(_TESTS)
__all__ = ["clock", "store", *sorted(_TESTS)]
