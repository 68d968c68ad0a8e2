"""The client's reads for front ends: histories of any execution, workers, queues per name,
counts, dead letters, and the list's id prefix and update-time order."""

from __future__ import annotations

import asyncio
import time

import pytest

import perdure
from perdure.core.history import (
    ActivityScheduled,
    ContinuedAsNew,
    EventRaised,
    ExecutionCompleted,
    ExecutionStarted,
)
from perdure.core.status import OrchestrationStatus
from perdure.store.base import InstanceCount, Message

app = perdure.App()


@app.activity
def inc(x: int) -> int:
    return x + 1


@app.orchestration
async def counter(ctx: perdure.OrchestrationContext, n: int) -> int:
    n = await ctx.call_activity(inc, n)
    if n < 3:
        ctx.continue_as_new(n)
    return n


@app.orchestration
async def waits(ctx: perdure.OrchestrationContext, _: None) -> str:
    return await ctx.wait_for_event("go")


def test_history_reads_any_execution_of_an_instance(client: perdure.Client, store: perdure.Store) -> None:
    with perdure.Worker(app, store):
        client.start(counter, 0, instance_id="c")
        assert client.wait("c", timeout=30).output == 3
    assert client.get("c").execution_id == 3
    first = client.history("c", execution_id=1)
    assert [e.input for e in first if isinstance(e, ExecutionStarted)] == [0]
    assert isinstance(first[-1], ContinuedAsNew)
    assert [e.name for e in first if isinstance(e, ActivityScheduled)] == ["inc"]
    current = client.history("c")
    assert current == client.history("c", execution_id=3) == client.get("c", history=True).history
    assert isinstance(current[-1], ExecutionCompleted) and current[-1].result == 3
    with pytest.raises(perdure.InstanceNotFoundError, match="'nope'"):
        client.history("nope")
    with pytest.raises(perdure.InvalidInputError, match="has executions 1 to 3, not 4"):
        client.history("c", execution_id=4)
    with pytest.raises(perdure.InvalidInputError, match="execution_id must be an integer"):
        client.history("c", execution_id="1")  # type: ignore[arg-type]


def test_workers_queue_depths_and_counts_describe_the_fleet(client: perdure.Client, store: perdure.Store) -> None:
    assert client.workers() == [] and client.queue_depths() == [] and client.instance_counts() == []
    client.start(waits, instance_id="w1")
    client.start(waits, instance_id="w2")
    [depth] = client.queue_depths()
    assert (depth.kind, depth.name, depth.depth, depth.visible) == ("orchestration", "waits", 2, 2)
    assert client.instance_counts() == [InstanceCount("waits", OrchestrationStatus.PENDING, 2)]
    with perdure.Worker(app, store, heartbeat_interval=0.05) as worker:
        deadline = time.monotonic() + 30
        while client.queue_depths() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.queue_depths() == []
        [row] = client.workers(alive_within=60)
        assert row.worker_id == worker.worker_id and "waits@1" in row.orchestrations and "inc" in row.activities
        assert row.concurrency["activity_concurrency"] == 256
    assert client.workers() == []  # a stopped worker removes its row
    assert client.instance_counts() == [InstanceCount("waits", OrchestrationStatus.RUNNING, 2)]
    with pytest.raises(perdure.InvalidInputError, match="alive_within"):
        client.workers(alive_within=-1)


def test_dead_letters_are_listed_for_one_instance_or_all(store_url: str) -> None:
    store = perdure.open_store(store_url, max_deliveries=1)
    try:
        client = perdure.Client(store)
        # a message to an instance that never appears is deferred, then dead-lettered
        store.enqueue_messages([Message("ghost", EventRaised(name="E", input=1))])
        with perdure.Worker(app, store, poll_interval=0.01):
            deadline = time.monotonic() + 30
            while not client.dead_letters() and time.monotonic() < deadline:
                time.sleep(0.02)
        [letter] = client.dead_letters(instance_id="ghost")
        assert letter.reason == "instance_not_found" and letter.event.name == "E"
        assert client.dead_letters(instance_id="other") == []
        assert client.queue_depths() == []
        with pytest.raises(perdure.InvalidInputError, match="limit"):
            client.dead_letters(limit=0)
    finally:
        store.close()


def test_list_filters_by_id_prefix_and_sorts_by_update(client: perdure.Client, store: perdure.Store) -> None:
    ids = ("order-1", "order-2", "refund-1")
    for iid in ids:
        client.start(waits, instance_id=iid)
    with perdure.Worker(app, store):
        # Every first turn committed before order-1's last one: order-1 is the latest update
        # (a round that took them all at once would give them one update time).
        deadline = time.monotonic() + 30
        while any(client.get(i).status is not OrchestrationStatus.RUNNING for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        client.raise_event("order-1", "go", "x")
        client.wait("order-1", timeout=30)
    page = client.list(prefix="order-")
    assert [s.instance_id for s in page.items] == ["order-2", "order-1"]
    recent = client.list(prefix="order-", sort="updated", limit=1)
    assert [s.instance_id for s in recent.items] == ["order-1"]
    more = client.list(prefix="order-", sort="updated", limit=1, cursor=recent.next_cursor)
    assert [s.instance_id for s in more.items] == ["order-2"] and more.next_cursor is None
    with pytest.raises(perdure.InvalidInputError, match="sort must be"):
        client.list(sort="name")


def test_the_async_client_has_the_same_reads(store: perdure.Store) -> None:
    async def main() -> None:
        client = perdure.AsyncClient(store)
        await client.start(waits, instance_id="a")
        assert await client.history("a") == []  # its start message is still queued
        with pytest.raises(perdure.InstanceNotFoundError):
            await client.history("b")
        assert await client.workers() == []
        assert [d.name for d in await client.queue_depths()] == ["waits"]
        assert await client.instance_counts() == [InstanceCount("waits", OrchestrationStatus.PENDING, 1)]
        assert await client.dead_letters() == []

    asyncio.run(main())
