"""Helpers for fault-injection tests: a clock that moves only when told, and fault hooks
for a store's ``fault_hook`` attribute."""

from __future__ import annotations

import threading


class FakeClock:
    """A controllable ``() -> float`` clock (UTC epoch seconds) for the ``clock`` option of
    stores and workers. Thread-safe; time moves only through :meth:`advance` / :meth:`set`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to ``now``."""
        with self._lock:
            self._now = float(now)


class InjectedFault(Exception):
    """The failure raised by :class:`FailAt`, standing for a crash at that point."""


class FailAt:
    """A fault hook raising :class:`InjectedFault` at the given points (for example
    ``"commit_turns:inside"``), ``times`` times in all (``None``: every time).

    ``store.fault_hook = FailAt("commit_turns:inside")`` makes the next turn commit roll back.
    ``calls`` records every point the store reported, failing or not.
    """

    def __init__(self, *points: str, times: int | None = 1) -> None:
        self.points = frozenset(points)
        self.remaining = times
        self.calls: list[str] = []
        self.fired = 0
        self._lock = threading.Lock()

    def __call__(self, point: str) -> None:
        with self._lock:
            self.calls.append(point)
            if point not in self.points or self.remaining == 0:
                return
            if self.remaining is not None:
                self.remaining -= 1
            self.fired += 1
        raise InjectedFault(f"fault injected at {point}")
