"""Helpers of the diagnosis scenarios: fast workers and polling for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import perdure

T = TypeVar("T")


def fast_worker(app: perdure.App, store: perdure.Store, **options: Any) -> perdure.Worker:
    """A worker that reacts within milliseconds and heartbeats often (fresh concurrency)."""
    options.setdefault("poll_interval", 0.02)
    options.setdefault("heartbeat_interval", 0.05)
    return perdure.Worker(app, store, **options)


def eventually(probe: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def verdict_becomes(
    client: perdure.Client, iid: str, code: str, timeout: float = 10.0, **thresholds: Any
) -> perdure.Diagnosis:
    """Diagnose ``iid`` until its verdict is ``code``; return that diagnosis."""
    last: list[Any] = []

    def probe() -> perdure.Diagnosis | None:
        d = client.diagnose(iid, **thresholds)
        last[:] = [d.codes]
        return d if d.verdict == code else None

    try:
        return eventually(probe, timeout, f"verdict {code} of {iid}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last findings: {last}") from None


def has_event(client: perdure.Client, iid: str, name: str) -> bool:
    """True once an EventRaised ``name`` is in the instance's history."""
    from perdure.core.history import EventRaised

    state = client.get(iid, history=True)
    return any(isinstance(e, EventRaised) and e.name == name for e in state.history or [])
