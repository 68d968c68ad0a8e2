"""Handed starts: a plain ``client.start`` in a process whose worker serves the orchestration
on the same store, and waits for work, creates the instance locked for that worker; the
worker's next round runs the first turn (no round of its own to find and lock it)."""

from __future__ import annotations

import threading
import time

import pytest

import perdure
from perdure.runtime.handed import HandedStarts
from perdure.runtime.rounds import RoundRunner
from perdure.store.base import NewInstance

app = perdure.App()
other_app = perdure.App()
OPTIONS = {"poll_interval": 0.05, "local_activity_budget": 30.0}
gate = threading.Event()
inside = threading.Event()


@pytest.fixture(autouse=True)
def fresh_state():
    gate.clear()
    inside.clear()


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.activity(local=True)
def held_at_the_gate(x: int) -> int:
    inside.set()
    assert gate.wait(10)
    return x


@app.orchestration
async def doubles(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, x)


@app.orchestration
async def waits_at_the_gate(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(held_at_the_gate, x)


@other_app.orchestration
async def unrelated(ctx: perdure.OrchestrationContext, _: object) -> None:
    return None


def idle(worker: perdure.Worker) -> None:
    """Wait until the worker's dispatch loop waits for work (its first rounds are over)."""
    deadline = time.monotonic() + 10
    while worker.handed.waiting_loops == 0:
        assert time.monotonic() < deadline, "the worker never waited for work"
        time.sleep(0.001)


def kinds(client: perdure.Client, iid: str) -> list[str]:
    return [type(e).__name__ for e in client.get(iid, history=True).history]


def test_a_start_is_handed_to_the_idle_worker_of_its_process(store, client):
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        handed = client.wait(client.start(doubles, 4), timeout=20)
        assert worker.stats()["handed_starts"] == 1
        # The same history as a start that any worker takes from the queue.
        queued = client.start(doubles, 4, instance_id="queued")
    assert handed.output == 8
    with perdure.Worker(app, store, **OPTIONS) as later:
        assert client.wait(queued, timeout=20).output == 8
    assert "handed_starts" not in later.stats()
    assert kinds(client, handed.instance_id) == kinds(client, queued)


def test_a_start_is_queued_when_the_worker_does_not_serve_it(store, client):
    with perdure.Worker(other_app, store, **OPTIONS) as other:
        iid = client.start(doubles, 1)
        assert [type(m.event).__name__ for m in store.pending_messages(iid)] == ["ExecutionStarted"]
    assert "handed_starts" not in other.stats()


def test_a_start_is_queued_while_the_worker_is_busy(store, client):
    """Forced interleaving: the worker's only dispatch loop is inside a turn (its local
    activity waits at a gate), so a start made meanwhile is not handed to it: it is queued for
    any worker, and this one takes it from the queue once it is free."""
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        first = client.start(waits_at_the_gate, 1)
        assert inside.wait(10)
        second = client.start(doubles, 3)
        assert client.get(second).status == "PENDING"
        assert [type(m.event).__name__ for m in store.pending_messages(second)] == ["ExecutionStarted"]
        gate.set()
        assert client.wait(first, timeout=20).output == 1
        assert client.wait(second, timeout=20).output == 6
    assert worker.stats()["handed_starts"] == 1  # the first only


def test_what_was_handed_over_but_not_run_is_released_at_once(store, client):
    """A stopping worker gives back the leases of handed instances it did not run: another
    worker takes them at once, not when the lease expires."""
    worker = perdure.Worker(app, store, **OPTIONS)
    handed = HandedStarts()
    runner = RoundRunner(store, worker.worker_id, worker.options, worker.orchestrations, worker.activities, handed)
    with handed.waiting():
        assert handed.reserve()
        items = store.create_and_lock([NewInstance("h1", "doubles", 5)], owner=worker.worker_id, lease_seconds=30.0)
        handed.put(items)
        assert not handed.reserve()  # one per waiting loop
    assert [i.instance.instance_id for i in items] == ["h1"]
    assert store.lock_orchestrations("someone-else", lease_seconds=30.0) == []
    runner.release()
    [retaken] = store.lock_orchestrations("someone-else", lease_seconds=30.0)
    assert retaken.instance.instance_id == "h1"
