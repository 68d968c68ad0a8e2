"""LISTEN/NOTIFY: wake-ups from other processes.

Write transactions that enqueue orchestration messages, activity tasks or change an
instance's status run ``pg_notify('perdure_<topic>', sender)``; PostgreSQL delivers the
notification to every listening session when (and only if) the transaction commits.
:class:`Listener` is a background thread on a dedicated connection that LISTENs on the
channels and forwards each notification to the store's in-process
:class:`~perdure.store.notify.Notifier`, so idle workers in every process wake at once.
``sender`` is a random id of the store object that wrote: its own listener skips those
notifications, since the store signalled its local waiters itself after the commit.

Notifications are only an accelerator: waiters always poll too, so one that is lost (the
connection broke, the listener was reconnecting) costs latency, never correctness. After
each reconnection the listener signals every topic, since something may have been missed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS, Notifier

log = logging.getLogger("perdure.store.postgres")

CHANNEL_PREFIX = "perdure_"
TOPICS = (ORCHESTRATIONS, ACTIVITIES, INSTANCES)


def channel(topic: str) -> str:
    """The NOTIFY channel of a notifier topic."""
    return CHANNEL_PREFIX + topic


def channels(topics: Iterable[str]) -> list[str]:
    """The channels of ``topics``, sorted."""
    return sorted(channel(t) for t in topics)


class Listener:
    """A daemon thread forwarding ``perdure_*`` notifications to ``notifier``, except those
    whose payload is ``sender`` (the store's own).

        It reconnects with exponential backoff (``backoff`` doubling up to ``backoff_cap``)
        whenever its connection fails, and pings the server after ``ping_interval`` seconds of
        silence so that a dead connection is noticed. :attr:`listening` is set while it is
        subscribed. :meth:`close` stops it promptly (a self-pipe interrupts its ``select``).
    """

    def __init__(
        self,
        conninfo: str,
        notifier: Notifier,
        *,
        sender: str = "",
        connect_kwargs: dict[str, Any] | None = None,
        ping_interval: float = 30.0,
        backoff: float = 0.1,
        backoff_cap: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.notifier = notifier
        self.sender = sender
        self.connect_kwargs = dict(connect_kwargs or {})
        self.ping_interval = ping_interval
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.listening = threading.Event()
        self.connections = 0  # successful subscriptions so far (reconnections + 1)
        self._topics = {channel(t): t for t in TOPICS}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="perdure-pg-listener", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Block until subscribed (or ``timeout``); return True if subscribed."""
        return self.listening.wait(timeout)

    def is_alive(self) -> bool:
        """True until the thread has stopped."""
        return self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close its connection. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the thread --

    def _run(self) -> None:
        delay = self.backoff
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True, **self.connect_kwargs)
            except psycopg.Error as exc:
                log.info("notification listener cannot connect, retrying in %.1f s: %s", delay, exc)
                self._stop.wait(delay)
                delay = min(self.backoff_cap, delay * 2)
                continue
            try:
                for name in self._topics:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                self.connections += 1
                self.listening.set()
                if self.connections > 1:
                    self.notifier.notify(*TOPICS)  # whatever was sent while we were away
                delay = self.backoff
                self._pump(conn)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.info("notification listener lost its connection, reconnecting: %s", exc)
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    conn.close()
            if not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(self.backoff_cap, delay * 2)

    def _pump(self, conn: psycopg.Connection[Any]) -> None:
        """Forward notifications until stopped; raise ``psycopg.Error`` if the connection fails."""
        quiet_since = time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ, "server")
            selector.register(self._wake_r, selectors.EVENT_READ, "stop")
            while not self._stop.is_set():
                ready = {key.data for key, _ in selector.select(self.ping_interval)}
                if "stop" in ready:
                    return
                if ready:
                    topics = {
                        self._topics[n.channel]
                        for n in conn.notifies(timeout=0)
                        if n.channel in self._topics and n.payload != self.sender
                    }
                    if topics:
                        self.notifier.notify(*sorted(topics))
                    if conn.broken or conn.closed:  # never spin on a dead socket
                        raise psycopg.OperationalError("the listener's connection was closed")
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= self.ping_interval:
                    conn.execute("SELECT 1")  # a dead peer shows here, not in select
                    quiet_since = time.monotonic()
