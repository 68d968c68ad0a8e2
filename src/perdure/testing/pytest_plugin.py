"""The pytest plugin of perdure: the ``perdure_env`` fixture.

pytest loads it by itself once perdure is installed (the ``pytest11`` entry point named
``perdure``; ``-p no:perdure`` turns it off). ``perdure_env`` is a fresh
:class:`~perdure.testing.Environment` per test, closed afterwards, for the app your
``perdure_app`` fixture returns::

    # conftest.py
    import pytest
    from shop import app

    @pytest.fixture
    def perdure_app():
        return app
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perdure.core.registry import App
from perdure.testing.environment import Environment


@pytest.fixture
def perdure_app() -> App:
    """The app ``perdure_env`` runs: override this fixture (in your conftest.py) to return
    your :class:`perdure.App`."""
    pytest.fail(
        "perdure_env needs your app: define a fixture named perdure_app that returns your perdure.App "
        "(in conftest.py, say)",
        pytrace=False,
    )


@pytest.fixture
def perdure_env(perdure_app: App) -> Iterator[Environment]:
    """A fresh :class:`~perdure.testing.Environment` for ``perdure_app``: in-memory store,
    virtual time, activities replaceable per test."""
    with Environment(perdure_app) as env:
        yield env
