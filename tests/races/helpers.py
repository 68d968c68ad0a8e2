"""Helpers of the race tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from perdure.core.history import HistoryEvent
from perdure.store.base import Store


def until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true (polling every 10 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:g} s")
        time.sleep(0.01)


def events(store: Store, instance_id: str, execution_id: int | None = None) -> list[HistoryEvent]:
    """The history events of one execution (the current one by default)."""
    return [r.event for r in store.get_history(instance_id, execution_id=execution_id)]


def of_type(history: list[HistoryEvent], kind: type) -> list:
    """The events of ``history`` that are ``kind``."""
    return [e for e in history if isinstance(e, kind)]
