"""LISTEN/NOTIFY: wake-ups from other processes.

Write transactions that enqueue orchestration messages, activity tasks or change an
instance's status run ``pg_notify('perdure_<topic>', sender)``; PostgreSQL delivers the
notification to every listening session when (and only if) the transaction commits.
:class:`Listener` is a background thread on a dedicated connection that LISTENs on the
channels and forwards each notification to the store's in-process
:class:`~perdure.store.notify.Notifier`, so idle workers in every process wake at once.
``sender`` is a random id of the store object that wrote: its own listener skips those
notifications, since the store signalled its local waiters itself after the commit.

Every listener follows the topics of the workers' work (:data:`ALWAYS`). A topic only
waiters need (:data:`ON_DEMAND`: an instance ended, for ``Client.wait``) it follows while a
waiter of its process does (:meth:`Listener.follow`), and for :data:`LINGER` seconds
after: a process that waits on no instance (a worker of a fleet), or only on instances its
own worker ends, is not woken each time an instance ends anywhere.

Notifications are only an accelerator: waiters always poll too, so one that is lost (the
connection broke, the listener was reconnecting) costs latency, never correctness. After
each reconnection the listener signals every topic, since something may have been missed;
so does a topic's subscription, and its end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import selectors
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS, Notifier

log = logging.getLogger("perdure.store.postgres")

CHANNEL_PREFIX = "perdure_"
#: The topics every listener follows: work for the workers of its process.
ALWAYS = (ORCHESTRATIONS, ACTIVITIES)
#: The topics a listener follows while a waiter of its process does (:meth:`Listener.follow`).
ON_DEMAND = (INSTANCES,)
TOPICS = ALWAYS + ON_DEMAND
#: Seconds a topic stays followed after its last follower left: a client that starts and
#: waits again and again keeps it, and a subscription is one round trip.
LINGER = 60.0
#: Seconds a new follower waits for the subscription (while the listener is connected).
SUBSCRIBE_TIMEOUT = 2.0


def channel(topic: str) -> str:
    """The NOTIFY channel of a notifier topic."""
    return CHANNEL_PREFIX + topic


def channels(topics: Iterable[str]) -> list[str]:
    """The channels of ``topics``, sorted."""
    return sorted(channel(t) for t in topics)


class Listener:
    """A daemon thread forwarding ``perdure_*`` notifications to ``notifier``, except those
    whose payload is ``sender`` (the store's own): of the :data:`ALWAYS` topics, and of an
    :data:`ON_DEMAND` one while it is followed (:meth:`follow`) and ``linger`` seconds after.

    It reconnects with exponential backoff (``backoff`` doubling up to ``backoff_cap``)
    whenever its connection fails, and pings the server after ``ping_interval`` seconds of
    silence so that a dead connection is noticed. :attr:`listening` is set while it is
    subscribed to the :data:`ALWAYS` topics. :meth:`close` stops it promptly (a self-pipe
    interrupts its ``select``, as it does for a new follower).
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
        linger: float = LINGER,
    ) -> None:
        self.conninfo = conninfo
        self.notifier = notifier
        self.sender = sender
        self.connect_kwargs = dict(connect_kwargs or {})
        self.ping_interval = ping_interval
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.linger = linger
        self.listening = threading.Event()
        self.connections = 0  # successful subscriptions so far (reconnections + 1)
        self._topics = {channel(t): t for t in TOPICS}
        self._stop = threading.Event()
        # Followers of each on-demand topic, and when the last one left (monotonic); the
        # thread's subscriptions, each set in ``_subscribed`` while it holds. The decision to
        # end one and the clearing of its event happen under the lock: a follower that comes
        # meanwhile finds it cleared, and waits for the subscription the thread makes again.
        self._lock = threading.Lock()
        self._followers: Counter[str] = Counter()
        self._left_at: dict[str, float] = {}
        self._subscribed = {topic: threading.Event() for topic in ON_DEMAND}
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="perdure-pg-listener", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Block until subscribed (or ``timeout``); return True if subscribed."""
        return self.listening.wait(timeout)

    @property
    def followed(self) -> frozenset[str]:
        """The on-demand topics the thread is subscribed to now."""
        return frozenset(topic for topic, subscribed in self._subscribed.items() if subscribed.is_set())

    @contextlib.contextmanager
    def follow(self, topic: str) -> Iterator[None]:
        """Follow ``topic`` (one of :data:`ON_DEMAND`) inside the block: on entry, the thread
        subscribes if it is not subscribed (waiting up to :data:`SUBSCRIBE_TIMEOUT` for it
        while connected or connecting for the first time; while it reconnects, the
        subscription comes with the connection). The subscription, and its end ``linger``
        seconds after the last follower left, each signal the topic: a version of it read
        before says nothing of what other processes did meanwhile."""
        subscribed = self._subscribed[topic]
        with self._lock:
            self._followers[topic] += 1
        try:
            if not subscribed.is_set():
                self._poke()
                if self.listening.is_set() or not self.connections:  # connected, or connecting first
                    subscribed.wait(SUBSCRIBE_TIMEOUT)
            yield
        finally:
            with self._lock:
                self._followers[topic] -= 1
                if not self._followers[topic]:
                    self._left_at[topic] = time.monotonic()

    def is_alive(self) -> bool:
        """True until the thread has stopped."""
        return self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close its connection. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._poke()
        self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _poke(self) -> None:
        """Interrupt the thread's ``select`` (to stop, or to subscribe)."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

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
                for topic in ALWAYS:
                    _execute(conn, "LISTEN", topic)
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
                for subscribed in self._subscribed.values():
                    subscribed.clear()
                with contextlib.suppress(Exception):
                    conn.close()
            if not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(self.backoff_cap, delay * 2)

    def _follow_followed(self, conn: psycopg.Connection[Any], now: float) -> float:
        """Subscribe to the on-demand topics followed (or left less than ``linger`` seconds
        ago) and end the other subscriptions; return when to look again (monotonic;
        infinity if nothing is subscribed)."""
        ending: list[str] = []
        with self._lock:
            wanted = {
                topic
                for topic in ON_DEMAND
                if self._followers[topic] or now - self._left_at.get(topic, -math.inf) < self.linger
            }
            for topic, subscribed in self._subscribed.items():
                if topic not in wanted and subscribed.is_set():
                    subscribed.clear()  # under the lock: see __init__
                    ending.append(topic)
            # A topic followed now is looked at again in ``linger`` seconds: its followers may
            # have left by then (they tell nobody: a wake of this thread at each wait's end
            # would cost more than the subscription).
            ends = [now + self.linger if self._followers[t] else self._left_at[t] + self.linger for t in wanted]
        for topic in ending:
            _execute(conn, "UNLISTEN", topic)
            self.notifier.notify(topic)
        for topic in sorted(wanted):
            if not self._subscribed[topic].is_set():
                _execute(conn, "LISTEN", topic)
                # Signalled before the followers go on: the version they read then is past
                # every notification missed before the subscription.
                self.notifier.notify(topic)
                self._subscribed[topic].set()
        return min(ends, default=math.inf)

    def _pump(self, conn: psycopg.Connection[Any]) -> None:
        """Forward notifications until stopped, following the on-demand topics as their
        followers come and go; raise ``psycopg.Error`` if the connection fails."""
        quiet_since = time.monotonic()
        ends_at = self._follow_followed(conn, quiet_since)
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ, "server")
            selector.register(self._wake_r, selectors.EVENT_READ, "poke")
            while not self._stop.is_set():
                timeout = max(0.0, min(quiet_since + self.ping_interval, ends_at) - time.monotonic())
                events = {key.data for key, _ in selector.select(timeout)}
                if "poke" in events:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    if self._stop.is_set():
                        return
                now = time.monotonic()
                if "server" not in events or "poke" in events or now >= ends_at:
                    # A follower came (a poke), a subscription's linger ran out, or the ping
                    # is due (the last follower may have left since: its linger runs on).
                    ends_at = self._follow_followed(conn, now)
                self._forward(conn)  # with what LISTEN and UNLISTEN read (psycopg's backlog)
                if "server" in events:
                    quiet_since = now
                elif now - quiet_since >= self.ping_interval:
                    conn.execute("SELECT 1")  # a dead peer shows here, not in select
                    quiet_since = time.monotonic()

    def _forward(self, conn: psycopg.Connection[Any]) -> None:
        """Signal the topics of the notifications received, but the store's own."""
        topics = {
            self._topics[n.channel]
            for n in conn.notifies(timeout=0)
            if n.channel in self._topics and n.payload != self.sender
        }
        if topics:
            self.notifier.notify(*sorted(topics))
        if conn.broken or conn.closed:  # never spin on a dead socket
            raise psycopg.OperationalError("the listener's connection was closed")


def _execute(conn: psycopg.Connection[Any], command: str, topic: str) -> None:
    """``LISTEN`` or ``UNLISTEN`` the channel of ``topic``."""
    conn.execute(sql.SQL(command + " {}").format(sql.Identifier(channel(topic))))
