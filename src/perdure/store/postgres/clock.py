"""The database server's clock, read without a round trip (invariant 2).

Lease expiry, lease takeover and timer due times are judged by one clock for every host:
the PostgreSQL server's. Asking the server for the time in every transaction would cost a
round trip before the first statement that needs it, so :class:`ServerClock` reads the
host's clock and adds the offset to the server's, measured when the store opens and again
every ``resync`` seconds (a query bracketed by two host readings; the offset is good to
about half a round trip). A host whose clock is 30 s fast thus neither takes live leases
over nor fires timers early.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("perdure.store.postgres")

#: Seconds between two measurements of the offset.
RESYNC_INTERVAL = 30.0


class ServerClock:
    """A ``() -> float`` clock (UTC epoch seconds) that follows the server's.

    ``read_server`` returns the server's time (one query); ``host_clock`` is this host's
    clock (``time.time``). :meth:`start` measures once and keeps a daemon thread that
    measures again every ``resync`` seconds until :meth:`stop`; a failed measurement keeps
    the last offset.
    """

    def __init__(
        self,
        read_server: Callable[[], float],
        host_clock: Callable[[], float] = time.time,
        resync: float = RESYNC_INTERVAL,
    ) -> None:
        self._read_server = read_server
        self._host = host_clock
        self._resync = resync
        self.offset = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> float:
        return self._host() + self.offset

    def measure(self) -> float:
        """Measure the offset now (server time minus host time) and return it."""
        before = self._host()
        server = self._read_server()
        after = self._host()
        self.offset = server - (before + after) / 2
        return self.offset

    def start(self) -> None:
        """Measure, then keep measuring in the background."""
        self.measure()
        if abs(self.offset) > 1.0:
            log.warning(
                "this host's clock is %.1f s %s the PostgreSQL server's; perdure uses the server's time",
                abs(self.offset),
                "behind" if self.offset > 0 else "ahead of",
            )
        self._thread = threading.Thread(target=self._run, name="perdure-server-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop measuring. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._resync):
            try:
                self.measure()
            except Exception:  # the last offset stays; the next try may work
                log.debug("could not measure the server's clock", exc_info=True)
