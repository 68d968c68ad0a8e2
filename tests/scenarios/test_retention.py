"""Nothing grows without bound (issue 16, item 11): an eternal orchestration keeps the
history of its current execution and of a bounded number before it; discard records go
with their executions; what purged or never-created instances left behind can be purged;
the rows of crashed workers and old request ids are swept."""

from __future__ import annotations

from datetime import timedelta

import pytest

import perdure
from perdure.core.history import EventRaised
from perdure.store.base import DeadLetterReason, InstanceQuery, Message, WorkerRecord
from perdure.testing import FakeClock, StepWorker, drain

app = perdure.App()


@app.orchestration
async def ticking(ctx: perdure.OrchestrationContext, n: int) -> int:
    if n >= 20:
        return n
    await ctx.create_timer(timedelta(seconds=1))
    ctx.continue_as_new(n + 1)


def test_an_instance_that_continues_as_new_keeps_a_bounded_history(store_url) -> None:
    """With ``keep_executions=3``, after 20 continue-as-new the executions older than the
    last three before the current one have no history and no discard records left.

    Pinned by ``forget_executions`` in the continue-as-new commit: without it every
    execution keeps its history (checked)."""
    clock = FakeClock()
    store = perdure.open_store(store_url, clock=clock, keep_executions=3)
    try:
        client = perdure.Client(store)
        iid = client.start(ticking, 0)
        drain(StepWorker(app, store, "w1"), clock, until=[iid], max_rounds=500)
        state = client.get(iid)
        assert (state.status, state.output, state.execution_id) == ("COMPLETED", 20, 21)
        kept = [e for e in range(1, 22) if store.get_history(iid, execution_id=e)]
        assert kept == [18, 19, 20, 21]
    finally:
        store.close()


@pytest.mark.parametrize("keep", [-1, 1.5, "3", True])
def test_a_bad_retention_is_refused_at_open(store_url, keep) -> None:
    with pytest.raises(perdure.InvalidInputError, match="keep_executions must be None"):
        perdure.open_store(store_url, keep_executions=keep)


def test_dead_letters_of_an_id_without_an_instance_can_be_purged(store_url) -> None:
    """A message for an instance that never existed is dead-lettered after its tries; the
    operator purges it by id (``client.purge``), or by id prefix (``purge_where``)."""
    store = perdure.open_store(store_url, max_deliveries=1)
    try:
        client = perdure.Client(store)
        ids = ["ghost-0", "ghost-1", "ghost-2", "other"]
        store.enqueue_messages([Message(iid, EventRaised(name="lost")) for iid in ids])
        store.lock_orchestrations("w", lease_seconds=5, limit=10)  # no instance: dead-lettered at once
        assert sorted(d.instance_id for d in store.dead_letters()) == ids
        assert {d.reason for d in store.dead_letters()} == {DeadLetterReason.INSTANCE_NOT_FOUND}
        client.purge("ghost-0")
        assert store.dead_letters(instance_id="ghost-0") == []
        assert store.purge_where(InstanceQuery(instance_id_prefix="ghost-")) == 2
        assert [d.instance_id for d in store.dead_letters()] == ["other"]
        with pytest.raises(perdure.InstanceNotFoundError):
            client.purge("ghost-0")  # nothing left under that id
    finally:
        store.close()


def test_the_sweep_forgets_crashed_workers_and_old_request_ids(store_url) -> None:
    clock = FakeClock()
    store = perdure.open_store(store_url, clock=clock)
    try:
        client = perdure.Client(store)
        store.heartbeat(WorkerRecord("crashed", "h", 1, (), (), clock(), clock()))
        client.start(ticking, 20, request_id="old-request")
        clock.advance(7200)
        store.heartbeat(WorkerRecord("alive", "h", 2, (), (), clock(), clock()))
        store.sweep(workers_before=clock() - 3600, requests_before=clock() - 3600)
        assert [w.worker_id for w in store.list_workers()] == ["alive"]
        client.start(ticking, 20, request_id="old-request")  # forgotten: a new start
        assert len(client.list(name="ticking").items) == 2
    finally:
        store.close()
