"""Handed starts: a plain ``client.start`` in a process whose worker serves the orchestration
on the same store, and waits for work, is run by that worker (on an idle activity thread,
else by its dispatch loop): the instance and its first turn commit in one transaction,
before ``start`` returns."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import perdure
from perdure.runtime.handed import HandedStart, HandedStarts
from perdure.runtime.rounds import RoundRunner
from perdure.store.base import NewInstance
from perdure.testing import FakeClock, FaultyStore
from tests.races.helpers import until
from tests.scenarios.helpers import idle

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


@app.activity
def double_at_the_gate(x: int) -> int:
    assert gate.wait(10)
    return 2 * x


@app.orchestration
async def doubles_at_the_gate(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double_at_the_gate, x)


@app.orchestration
async def doubles(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, x)


@app.orchestration
async def waits_at_the_gate(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(held_at_the_gate, x)


threads: list[tuple[str, str]] = []


@app.activity
def notes_its_thread(x: int) -> int:
    threads.append(("activity", threading.current_thread().name))
    return x


@app.orchestration
async def notes_threads(ctx: perdure.OrchestrationContext, x: int) -> int:
    if not ctx.is_replaying:
        threads.append(("first turn", threading.current_thread().name))
    return await ctx.call_activity(notes_its_thread, x)


@app.orchestration
async def naps(ctx: perdure.OrchestrationContext, seconds: float) -> str:
    await ctx.create_timer(timedelta(seconds=seconds))
    return "up"


@other_app.orchestration
async def unrelated(ctx: perdure.OrchestrationContext, _: object) -> None:
    return None


def kinds(client: perdure.Client, iid: str) -> list[str]:
    return [type(e).__name__ for e in client.get(iid, history=True).history]


def test_a_start_is_run_by_the_idle_worker_of_its_process(store, client):
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        iid = client.start(doubles_at_the_gate, 4)
        # start returned after the first turn committed with the instance: nothing queued.
        assert kinds(client, iid) == ["TurnStarted", "ExecutionStarted", "ActivityScheduled"]
        assert store.pending_messages(iid) == []
        assert worker.stats()["handed_starts"] == 1
        gate.set()
        handed = client.wait(iid, timeout=20)
    assert handed.output == 8
    # The same history as a start that a worker takes from the queue.
    queued = client.start(doubles_at_the_gate, 4, instance_id="queued")
    with perdure.Worker(app, store, **OPTIONS) as later:
        assert client.wait(queued, timeout=20).output == 8
    assert "handed_starts" not in later.stats()
    assert kinds(client, iid) == kinds(client, queued)


def test_a_handed_start_and_its_first_activity_run_on_one_activity_thread(store, client):
    """The first turn runs on an idle activity thread of the worker (not the caller's, not the
    dispatch loop's), and the activity it schedules then runs on that same thread: no thread
    wakes in between."""
    threads.clear()
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        iid = client.start(notes_threads, 7)
        assert client.wait(iid, timeout=20).output == 7
        assert worker.stats()["handed_starts"] == 1
    [(first, turn_thread), (then, activity_thread)] = threads
    assert (first, then) == ("first turn", "activity")
    assert turn_thread.startswith("perdure-activity") and activity_thread == turn_thread


def test_a_handed_start_does_not_wait_for_a_busy_activity_thread(store, client):
    """Forced interleaving: the worker's only activity thread is held at a gate by an
    activity, while its dispatch loop waits for work (and would not wake by itself for
    30 s). A start handed over meanwhile is run by the loop, and returns with the gate
    still shut (queued for the activity pool, it would wait for that thread)."""
    options = {**OPTIONS, "poll_interval": 30.0}
    with perdure.Worker(app, store, **options, activity_concurrency=1) as worker:
        idle(worker)
        held = client.start(doubles_at_the_gate, 1)
        until(lambda: worker.activities.running > 0, what="the gated activity running")
        idle(worker)
        started: list[str] = []
        starting = threading.Thread(target=lambda: started.append(client.start(notes_threads, 2)), daemon=True)
        starting.start()
        starting.join(5)  # the gated activity holds its thread for 10 s
        assert started, "the start waited for the busy activity thread"
        [second] = started
        assert client.get(second).status == "RUNNING"
        assert worker.stats()["handed_starts"] == 2
        gate.set()
        assert client.wait(held, timeout=20).output == 2
        assert client.wait(second, timeout=20).output == 2


def test_a_start_is_queued_when_the_worker_does_not_serve_it(store, client):
    with perdure.Worker(other_app, store, **OPTIONS) as other:
        iid = client.start(doubles, 1)
        assert [type(m.event).__name__ for m in store.pending_messages(iid)] == ["ExecutionStarted"]
    assert "handed_starts" not in other.stats()


def test_a_start_is_queued_when_the_worker_runs_no_local_starts(store, client):
    with perdure.Worker(app, store, **OPTIONS, run_local_starts=False) as worker:
        idle(worker)
        iid = client.start(doubles, 2)
        assert client.wait(iid, timeout=20).output == 4
    assert "handed_starts" not in worker.stats()


def test_run_local_starts_must_be_a_bool(store):
    with pytest.raises(perdure.InvalidInputError, match="run_local_starts must be True or False, got 'yes'"):
        perdure.Worker(app, store, run_local_starts="yes")


def test_a_start_is_queued_while_the_worker_is_busy(store, client):
    """Forced interleaving: the worker's only dispatch loop is inside the first turn of a start
    it was handed (its local activity waits at a gate, so that start has not returned), and a
    start made meanwhile is not handed to it: it is queued for any worker, and this one takes
    it from the queue once it is free."""
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        first: list[str] = []
        starting = threading.Thread(target=lambda: first.append(client.start(waits_at_the_gate, 1)), daemon=True)
        starting.start()
        assert inside.wait(10)
        second = client.start(doubles, 3)
        assert client.get(second).status == "PENDING"
        assert [type(m.event).__name__ for m in store.pending_messages(second)] == ["ExecutionStarted"]
        gate.set()
        starting.join(10)
        assert client.wait(first[0], timeout=20).output == 1
        assert client.wait(second, timeout=20).output == 6
    assert worker.stats()["handed_starts"] == 1  # the first only


def test_a_handed_start_raises_what_the_start_raised_and_keeps_what_was_stored(store, client):
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        iid = client.start(doubles, 1, instance_id="once")
        assert client.wait(iid, timeout=20).output == 2
        idle(worker)
        with pytest.raises(perdure.InstanceExistsError, match="'once'"):
            client.start(doubles, 5, instance_id="once")
    assert client.get("once").output == 2


def test_a_start_handed_over_but_not_run_is_given_back_to_its_caller(store, client):
    """A stopping worker's dispatch loop may never run a start handed to it: ``release()``
    gives it back, and the caller then queues it (its ``result()`` answers False)."""
    worker = perdure.Worker(app, store, **OPTIONS)
    handed = HandedStarts()
    runner = RoundRunner(store, worker.worker_id, worker.options, worker.orchestrations, worker.activities, handed)
    start = HandedStart(NewInstance("h1", "doubles", 5), replace_terminal=False, request_id=None)
    with handed.waiting():
        assert handed.offer(start)
        assert not handed.offer(start)  # one per waiting loop
    answer: list[bool] = []
    caller = threading.Thread(target=lambda: answer.append(start.result()), daemon=True)
    caller.start()
    runner.release()
    caller.join(10)
    assert answer == [False]
    assert client.get("h1") is None  # nothing was created: the caller queues it


def test_a_loop_woken_for_a_handed_start_runs_no_round_and_keeps_its_next_due_time():
    """The start committed itself and queued nothing (it took its task): the round after it
    is skipped, and the loop sleeps until the work its last round saw comes due (a timer),
    not for a whole ``poll_interval``. Pinned by the report of the skipped round, which
    keeps the last round's due time."""
    clock = FakeClock()
    inner = perdure.open_store("sqlite://:memory:", clock=clock)
    store = FaultyStore(inner)
    try:
        client = perdure.Client(inner)
        worker = perdure.Worker(app, store, poll_interval=5.0)  # type: ignore[arg-type]
        client.start(naps, 0.5)
        worker.rounds.run()  # locks the instance
        due = worker.rounds.run().next_due  # its first turn creates the timer
        assert due == pytest.approx(clock() + 0.5)
        start = HandedStart(NewInstance("h1", "doubles", 5), replace_terminal=False, request_id=None)
        with worker.handed.waiting():
            assert worker.handed.offer(start)
        rounds_before = store.hits["run_round:before"]
        report = worker.rounds.run()
        assert start.result() is True and client.get("h1").status == "RUNNING"
        assert store.hits["run_round:before"] == rounds_before  # no round after the start
        assert (report.turns, report.busy, report.next_due) == (0, False, due)
        assert worker._idle_timeout(report) == pytest.approx(0.5, abs=0.01)
    finally:
        inner.close()


def test_a_loop_woken_for_a_handed_start_still_takes_a_start_queued_before_it():
    """A start made while the dispatch loop was busy is queued and signalled. If the loop's
    next round runs a start handed over meanwhile, it still looks at the queue: skipping
    that round left the queued start waiting for ``poll_interval`` (W1 with local
    activities, one ``start`` each, took 1.2 s instead of 0.2 s in most runs)."""
    clock = FakeClock()
    store = perdure.open_store("sqlite://:memory:", clock=clock)
    try:
        client = perdure.Client(store)
        worker = perdure.Worker(app, store, poll_interval=5.0)
        worker.rounds.run()  # a first look: nothing queued
        queued = client.start(doubles, 1)  # no loop waits for work: queued, and signalled
        start = HandedStart(NewInstance("h1", "doubles", 2), replace_terminal=False, request_id=None)
        with worker.handed.waiting():
            assert worker.handed.offer(start)
        report = worker.rounds.run()
        assert start.result() is True
        assert (report.claimed, report.busy) == (1, True)  # the queued start, locked at once
        assert [i.instance.instance_id for i in worker.rounds.claimed] == [queued]
    finally:
        store.close()
