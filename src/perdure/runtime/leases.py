"""Renewing the leases of running activities on a thread of their own.

A renewal must not wait for a worker round: a round can be held up in the store's retries
(PostgreSQL restarting or unreachable) for longer than the lease, and a renewal made only
between rounds would then never be made. The renewer keeps its own schedule (every third of
the lease), and while the store does not answer it tries again every
:data:`RETRY_INTERVAL`, alongside the round's retries, so the leases are renewed as soon as
the store answers. Each attempt borrows its own connection from the store (a pooled one on
PostgreSQL; on SQLite it waits for the single write connection like any write, and holds no
lock of the worker's meanwhile, so it cannot deadlock with a round).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("perdure.worker")

#: Seconds between renewal attempts while the store does not answer (at most the interval).
RETRY_INTERVAL = 0.5


class LeaseRenewer:
    """Calls ``renew`` every ``interval`` seconds on a daemon thread, sooner again after a
    failure, from :meth:`start` until :meth:`stop`."""

    def __init__(self, renew: Callable[[], None], interval: float) -> None:
        self._renew = renew
        self.interval = interval
        self.retry_interval = min(interval, RETRY_INTERVAL)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start renewing (a no-op while already started)."""
        if self._thread is not None:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="perdure-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; waits for an attempt in progress to end."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()

    def _loop(self, stop: threading.Event) -> None:
        delay = self.interval
        failures = 0
        while not stop.wait(delay):
            try:
                self._renew()
            except Exception as exc:
                # One line per attempt while the store is away; the traceback once.
                failures += 1
                log.warning(
                    "could not renew the leases of running activities (%s: %s); trying again in %g s",
                    type(exc).__name__,
                    exc,
                    self.retry_interval,
                    exc_info=failures == 1,
                )
                delay = self.retry_interval
                continue
            if failures:
                log.info("activity leases renewed again after %d failed attempts", failures)
            failures = 0
            delay = self.interval
