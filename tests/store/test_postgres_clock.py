"""PostgreSQL judges leases and timers by the database server's clock (invariant 2, issue
16 item 7): a worker host whose clock is 30 s fast neither takes live leases over nor fires
timers early. Each store here reads a host clock that is 30 s ahead of the real one; the
server's clock is the real one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

import perdure
from perdure.core.history import EventRaised
from perdure.store.base import Message
from perdure.store.postgres import PostgresStore
from perdure.testing.conformance.helpers import running
from tests import pgserver

FAST = 30.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database."""
    with pgserver.fresh_database() as url:
        yield url


def fast_host() -> float:
    """A host clock 30 s ahead."""
    return time.time() + FAST


def test_the_store_clock_follows_the_server_not_the_host(pg_url: str) -> None:
    store = PostgresStore(pg_url, host_clock=fast_host, notify=False)
    try:
        assert abs(store.clock() - time.time()) < 1.0  # the server's time, not the host's
        assert store.server_clock is not None and abs(store.server_clock.offset + FAST) < 1.0
    finally:
        store.close()


def test_a_host_with_a_fast_clock_does_not_take_a_live_lease(pg_url: str) -> None:
    """Worker A holds a 10 s lease; a worker on the fast host must not see it expired.

    Pinned by :class:`~perdure.store.postgres.clock.ServerClock`: with the host's clock as
    the store's, the fast host's lock takes the lease over at once (checked)."""
    honest = PostgresStore(pg_url, notify=False)
    fast = PostgresStore(pg_url, host_clock=fast_host, notify=False)
    try:
        running(honest, "i1")
        honest.enqueue_messages([Message("i1", EventRaised(name="e"), 1)])
        [held] = honest.lock_orchestrations("A", lease_seconds=10, instance_ids=["i1"])
        assert fast.lock_orchestrations("B", lease_seconds=10) == []
        honest.abandon_orchestration("i1", held.lease_token)
        assert [i.instance.instance_id for i in fast.lock_orchestrations("B", lease_seconds=10)] == ["i1"]
    finally:
        honest.close()
        fast.close()


app = perdure.App()


@app.orchestration
async def sleeps(ctx: perdure.OrchestrationContext, seconds: float) -> str:
    await ctx.create_timer(timedelta(seconds=seconds))
    return "woke"


def test_a_host_with_a_fast_clock_does_not_fire_a_timer_early(pg_url: str) -> None:
    """A 3 s timer created by a worker on an honest host is taken over by a worker on the
    fast host: it fires at its time, not 30 s early (at once)."""
    honest = PostgresStore(pg_url, notify=False)
    fast = PostgresStore(pg_url, host_clock=fast_host, notify=False)
    client = perdure.Client(honest)
    try:
        iid = client.start(sleeps, 3.0)
        with perdure.Worker(app, honest, poll_interval=0.05):
            deadline = time.monotonic() + 10
            while not client.get(iid).waiting_on.timers:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        [timer] = client.get(iid).waiting_on.timers
        with perdure.Worker(app, fast, poll_interval=0.05):
            time.sleep(1.0)
            assert client.get(iid).status == "RUNNING"  # not fired by the fast host's clock
            state = perdure.Client(fast).wait(iid, timeout=10)
            fired = time.time()
        assert state.output == "woke"
        assert fired >= timer.fire_at - 0.5  # at its time by the real clock
    finally:
        honest.close()
        fast.close()
