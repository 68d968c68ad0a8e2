"""A store whose calls are timed by operation, for the store transaction latency metric."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from perdure.store.base import Store

#: The store operations timed: every method of the :class:`~perdure.store.base.Store`
#: interface (so a method added to the interface is timed too), ``close`` excepted.
TIMED_OPERATIONS = frozenset(
    name for name, value in vars(Store).items() if callable(value) and not name.startswith("_") and name != "close"
)

StoreCallObserver = Callable[[str, float, bool], None]


class TimedStore:
    """Wraps ``store``: each call of an operation of :data:`TIMED_OPERATIONS` reports
    ``(operation, seconds, failed)`` to ``observe``; everything else (attributes, the
    notifier, other methods) is the wrapped store's own."""

    def __init__(self, store: Any, observe: StoreCallObserver) -> None:
        self._store = store
        self._observe = observe

    @property
    def wrapped(self) -> Any:
        """The store this one times."""
        return self._store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if name not in TIMED_OPERATIONS or not callable(value):
            return value
        timed = _timed(name, value, self._observe)
        object.__setattr__(self, name, timed)  # looked up once: later calls skip __getattr__
        return timed

    def __repr__(self) -> str:
        return f"TimedStore({self._store!r})"


def _timed(operation: str, method: Callable[..., Any], observe: StoreCallObserver) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        failed = True
        try:
            result = method(*args, **kwargs)
            failed = False
            return result
        finally:
            observe(operation, time.perf_counter() - started, failed)

    return call
