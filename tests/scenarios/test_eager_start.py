"""Eager starts (``client.start(..., eager=True)``): with a worker of this process serving
the orchestration on the same store, the first turn runs in the caller's thread and
commits with the start, in one transaction (or not at all)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import perdure
from perdure.testing import Fault, FaultyStore, InjectedFault
from tests.races.helpers import until
from tests.scenarios.helpers import idle

app = perdure.App()
# A local-activity budget no loaded test machine exceeds: chains are never cut short.
OPTIONS = {"poll_interval": 0.05, "local_activity_budget": 30.0}
other_app = perdure.App()
calls: Counter[str] = Counter()
threads: list[str] = []
gate = threading.Event()  # held by ``gated`` until the test sets it
inside_gated = threading.Event()
inside_slow = threading.Event()


@pytest.fixture(autouse=True)
def fresh_state():
    calls.clear()
    threads.clear()
    gate.clear()
    inside_gated.clear()
    inside_slow.clear()


@app.activity(local=True)
def inc(x: int) -> int:
    calls["inc"] += 1
    threads.append(threading.current_thread().name)
    return x + 1


@app.activity(local=True)
async def gated(x: int) -> int:
    inside_gated.set()
    await asyncio.to_thread(gate.wait, 10)
    return x + 1


@app.orchestration
async def chain(ctx: perdure.OrchestrationContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(inc, x)
    return x


@app.activity
def slow_double(x: int) -> int:
    inside_slow.set()
    assert gate.wait(10)
    return 2 * x


@app.orchestration
async def then_slow_double(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(slow_double, await ctx.call_activity(inc, x))


@app.orchestration
async def waits_at_the_gate(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(gated, x)


@app.orchestration
async def gated_then_slow_double(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(slow_double, await ctx.call_activity(gated, x))


@app.orchestration
async def fails_at_once(ctx: perdure.OrchestrationContext, _: object) -> None:
    raise ValueError("bad order")


@other_app.orchestration
async def unrelated(ctx: perdure.OrchestrationContext, _: object) -> None:
    return None


def shape(client: perdure.Client, iid: str) -> list[tuple[str, object]]:
    """The instance's history without timestamps: kinds and task ids."""
    history = client.get(iid, history=True).history
    return [(type(e).__name__, getattr(e, "task_id", None)) for e in history]


def test_an_eager_start_finishes_a_local_chain_before_start_returns(store, client):
    """The whole orchestration runs in the caller's thread: done when ``start`` returns,
    with the history an ordinary start records."""
    with perdure.Worker(app, store, **OPTIONS) as worker:
        eager = client.start(chain, 3, eager=True)
        state = client.get(eager)  # no wait: it is already over
        assert state.status == "COMPLETED" and state.output == 3
        assert threads == [threading.current_thread().name] * 3
        ordinary = client.start(chain, 3)
        assert client.wait(ordinary, timeout=20).output == 3
    assert shape(client, eager) == shape(client, ordinary)
    assert worker.stats()["eager_starts"] == 1 and worker.stats()["local_activities"] == 6


def test_an_eager_start_takes_the_ordinary_activities_it_schedules(store, client):
    """Forced interleaving: every worker round is held before it starts, so only the start's
    own transaction can take the task its turn scheduled. It does, for the worker, which
    runs it at once."""
    rounds_open = threading.Event()
    held = FaultyStore(store, [Fault("run_round:before", lambda _: rounds_open.wait(60), times=None)])
    held_client = perdure.Client(held)  # type: ignore[arg-type]
    with perdure.Worker(app, held, **OPTIONS) as worker:  # type: ignore[arg-type]
        try:
            iid = held_client.start(then_slow_double, 4, eager=True)
            assert inside_slow.wait(5)  # running, with no round in between
            state = client.get(iid)
            assert state.status == "RUNNING" and [a.name for a in state.waiting_on.activities] == ["slow_double"]
            [task] = store.activity_tasks(iid)
            assert task.lease_owner == worker.worker_id
        finally:
            rounds_open.set()
            gate.set()
        assert client.wait(iid, timeout=20).output == 10
    assert worker.stats()["eager_starts"] == 1 and worker.stats()["activities"] == 1


def test_an_eager_start_and_the_rounds_share_the_room_for_activities(store, client):
    """Forced interleaving: with room for one activity, an eager start reserves it before its
    first turn, which waits at a gate (a local activity). A round that runs meanwhile, the
    first turn of an instance started by another caller, takes none of the task it writes:
    the room is the start's (without the reservation both took their task: one activity
    over ``activity_concurrency``). Once the gate opens, the start takes its own task, and
    the other one runs after it."""
    options = {**OPTIONS, "poll_interval": 5.0, "activity_concurrency": 1, "run_local_starts": False}
    with perdure.Worker(app, store, **options) as worker:
        idle(worker)
        eager: list[str] = []
        starting = threading.Thread(
            target=lambda: eager.append(client.start(gated_then_slow_double, 1, eager=True)), daemon=True
        )
        starting.start()
        assert inside_gated.wait(10)
        other = client.start(then_slow_double, 5)
        until(lambda: store.activity_tasks(other), what="the other instance's first turn")
        time.sleep(0.2)  # the round that wrote it has ended
        assert [t.lease_owner for t in store.activity_tasks(other)] == [None]
        gate.set()
        starting.join(10)
        assert client.wait(eager[0], timeout=20).output == 4
        assert client.wait(other, timeout=20).output == 12
    assert worker.stats()["eager_starts"] == 1


def test_an_eager_start_leaves_the_room_a_round_in_flight_reserved(store, client):
    """Forced interleaving: with room for one activity, a round is held before its
    transaction (it may take a task: it looks at the queues for a new instance). An eager
    start made meanwhile finds no room: the ordinary task its first turn schedules is
    queued, not taken, and runs once the round is let go."""
    armed, rounds_open = threading.Event(), threading.Event()
    held = FaultyStore(
        store, [Fault("run_round:before", lambda _: not armed.is_set() or rounds_open.wait(60), times=None)]
    )
    held_client = perdure.Client(held)  # type: ignore[arg-type]
    options = {**OPTIONS, "poll_interval": 5.0, "activity_concurrency": 1, "run_local_starts": False}
    with perdure.Worker(app, held, **options) as worker:  # type: ignore[arg-type]
        try:
            idle(worker)
            rounds = held.hits["run_round:before"]
            armed.set()
            queued = held_client.start(chain, 1)  # signals the loop, whose round is held
            until(lambda: held.hits["run_round:before"] > rounds, what="a round held")
            gate.set()  # slow_double runs at once once it is started
            eager = held_client.start(then_slow_double, 4, eager=True)
            assert [t.lease_owner for t in store.activity_tasks(eager)] == [None]
        finally:
            rounds_open.set()
            gate.set()
        assert client.wait(eager, timeout=20).output == 10
        assert client.wait(queued, timeout=20).output == 1


def test_without_a_worker_serving_it_an_eager_start_is_an_ordinary_start(store, client):
    """No worker in this process, or one that does not serve the orchestration, or one on
    another store object: the instance is queued for whichever worker serves it."""
    alone = client.start(chain, 1, eager=True)
    with perdure.Worker(other_app, store, **OPTIONS) as other:
        elsewhere = client.start(chain, 1, eager=True)
    assert "eager_starts" not in other.stats()
    for iid in (alone, elsewhere):
        assert client.get(iid).status == "PENDING"
        assert [type(m.event).__name__ for m in store.pending_messages(iid)] == ["ExecutionStarted"]
    assert calls["inc"] == 0
    with perdure.Worker(app, store, **OPTIONS):
        assert client.wait(alone, timeout=20).output == client.wait(elsewhere, timeout=20).output == 1


def test_an_eager_start_of_a_taken_id_runs_nothing(store, client):
    with perdure.Worker(app, store, **OPTIONS):
        client.start(chain, 1, instance_id="order-1", eager=True)
        with pytest.raises(perdure.InstanceExistsError, match="order-1"):
            client.start(chain, 5, instance_id="order-1", eager=True)
        assert calls["inc"] == 1  # the refused start ran no activity
        client.start(chain, 2, instance_id="order-1", eager=True, replace_terminal=True)
    assert client.get("order-1").output == 2 and calls["inc"] == 3


def test_an_eager_start_at_a_later_time_waits_for_it(store, client):
    with perdure.Worker(app, store, **OPTIONS) as worker:
        later = datetime.now(UTC) + timedelta(seconds=0.3)
        iid = client.start(chain, 1, start_at=later, eager=True)
        assert client.get(iid).status == "PENDING" and calls["inc"] == 0
        state = client.wait(iid, timeout=20)
    assert state.output == 1 and state.last_updated_at >= later
    assert "eager_starts" not in worker.stats()  # the first turn came when due, from a round


def test_a_first_turn_that_fails_fails_the_instance(store, client):
    with perdure.Worker(app, store, **OPTIONS):
        state = client.get(client.start(fails_at_once, None, eager=True))
    assert state.status == "FAILED" and "bad order" in state.failure.message


def test_an_eager_start_whose_commit_fails_leaves_nothing(store, client):
    """Invariant 1: the start, the turn and its local activities commit together or not at
    all. The activity ran (at-least-once); the instance does not exist; the id is free."""
    faulty = FaultyStore(store, [Fault("create_and_run:inside", "raise", nth=1)])
    eager_client = perdure.Client(faulty)  # type: ignore[arg-type]
    with perdure.Worker(app, faulty, **OPTIONS):  # type: ignore[arg-type]
        with pytest.raises(InjectedFault):
            eager_client.start(chain, 1, instance_id="i1", eager=True)
        assert client.get("i1") is None and store.pending_messages("i1") == []
        eager_client.start(chain, 2, instance_id="i1", eager=True)
    assert client.get("i1").output == 2 and calls["inc"] == 3
    assert shape(client, "i1").count(("ActivityCompleted", 1)) == 1


def test_stop_waits_for_an_eager_start_in_progress(store, client):
    """Forced interleaving: ``stop()`` is called while an eager start's async local activity
    runs on the worker's event loop. Stop must wait for it (shutting the loop down under it
    would fail the activity); an eager start after stop is an ordinary one."""
    worker = perdure.Worker(app, store, **OPTIONS).start()
    started: list[str] = []
    starter = threading.Thread(target=lambda: started.append(client.start(waits_at_the_gate, 1, eager=True)))
    starter.start()
    assert inside_gated.wait(10)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()  # held by the eager start
    gate.set()
    starter.join(10)
    stopper.join(10)
    assert not stopper.is_alive()
    [iid] = started
    assert client.get(iid).status == "COMPLETED" and client.get(iid).output == 2
    late = client.start(chain, 1, eager=True)
    assert client.get(late).status == "PENDING" and calls["inc"] == 0


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.orchestration
async def input_kinds(ctx: perdure.OrchestrationContext, order: dict) -> list[str]:
    kinds = [type(order["lines"]).__name__, type(next(iter(order["quantities"]))).__name__]
    await ctx.call_activity(double, 1)  # the last turn runs on the executor cached since
    return kinds


@pytest.mark.parametrize("eager", [True, False])
def test_a_first_turn_run_at_the_start_sees_its_input_as_a_replay_will(store, client, eager):
    """JSON has no tuples and no integer keys: a replay of the first turn reads a list and
    string keys from the history, so the first turn itself must too, when an eager start
    (``eager``) or the idle worker it is handed to (not ``eager``) runs it at the start.
    Handed the caller's objects it saw a tuple and integer keys (checked): an orchestration
    indexing ``order["quantities"][7]`` would run its first turn and fail on replay."""
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        iid = client.start(input_kinds, {"lines": ("sku-1", "sku-2"), "quantities": {7: 1}}, eager=eager)
        assert client.wait(iid, timeout=10).output == ["list", "str"]
        assert worker.stats()["eager_starts" if eager else "handed_starts"] == 1


def test_an_eager_start_is_refused_bad_flags(store, client):
    with pytest.raises(perdure.InvalidInputError, match="eager must be True or False, got 'yes'"):
        client.start(chain, 1, eager="yes")  # type: ignore[arg-type]
    assert client.list().items == []


def test_the_async_client_starts_eagerly_too(store, client):
    async def start() -> str:
        return await perdure.AsyncClient(store).start(chain, 2, eager=True)

    with perdure.Worker(app, store, **OPTIONS) as worker:
        iid = asyncio.run(start())
        assert client.get(iid).output == 2  # finished when start returned
    assert worker.stats()["eager_starts"] == 1
