"""The worker's rounds: one store transaction records finished activities, runs and
commits the due turns, and takes the activity tasks those turns schedule."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest

import perdure
from perdure.core.history import ActivityCompleted
from perdure.testing import FakeClock, Fault, FaultyStore
from tests.races.helpers import until

app = perdure.App()


@app.activity
def inc(x: int) -> int:
    return x + 1


@app.orchestration
async def chain(ctx: perdure.OrchestrationContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(inc, x)
    return x


@app.orchestration
async def fan(ctx: perdure.OrchestrationContext, n: int) -> int:
    return sum(await ctx.when_all([ctx.call_activity(inc, i) for i in range(n)]))


def test_a_sequence_runs_on_rounds_alone(store, client):
    """Every write of the work is a round: no separate lock, commit or completion."""
    counting = FaultyStore(store)
    with perdure.Worker(app, counting, poll_interval=0.05):  # type: ignore[arg-type]
        state = client.wait(client.start(chain, 20), timeout=20)
    assert state.output == 20
    split = ("lock_orchestrations", "commit_turns", "lock_activities", "complete_activities")
    assert [counting.hits[f"{m}:before"] for m in split] == [0, 0, 0, 0]
    # One round per step, plus the first turn; a few more for wake-ups that found nothing.
    assert 21 <= counting.hits["run_round:before"] <= 40


def lease_expiry(store_url: str, instance_id: str) -> float | None:
    """The expiry of ``instance_id``'s lease as the store holds it (read from its table)."""
    sql = "SELECT expires_at FROM orchestration_leases WHERE instance_id = "
    if store_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            row = conn.execute(sql + "?", (instance_id,)).fetchone()
    else:
        import psycopg

        with psycopg.connect(store_url) as conn:
            row = conn.execute(sql + "%s", (instance_id,)).fetchone()
    return None if row is None else row[0]


@pytest.mark.parametrize("lease_seconds, step_seconds", [(30.0, 0.0), (0.6, 0.05)])
def test_a_sequence_extends_its_kept_lease_once_half_of_it_has_gone(
    store_url, store, client, lease_seconds, step_seconds
):
    """A worker keeps the lease of an instance whose next activity it runs, and extends it
    only once half of it has gone: the steps in between write nothing to it."""
    expiries: list[float | None] = []
    readers = perdure.App()

    @readers.activity
    def read_lease(x: int) -> int:
        expiries.append(lease_expiry(store_url, "sequence"))
        time.sleep(step_seconds)
        return x + 1

    @readers.orchestration
    async def sequence(ctx: perdure.OrchestrationContext, n: int) -> int:
        x = 0
        for _ in range(n):
            x = await ctx.call_activity(read_lease, x)
        return x

    with perdure.Worker(readers, store, lease_seconds=lease_seconds):
        assert client.wait(client.start(sequence, 20, instance_id="sequence"), timeout=30).output == 20
    held = [e for e in expiries if e is not None]
    assert len(held) >= 15  # the lease was kept between the steps
    changes = sum(1 for before, after in itertools.pairwise(held) if after != before)
    if step_seconds == 0:
        assert changes == 0  # 20 steps well within half of 30 s
    else:
        # 20 steps of 50 ms under a 0.6 s lease: extended every 0.3 s or so, not at each step.
        assert 1 <= changes <= 8, held
        assert all(after >= before for before, after in itertools.pairwise(held))


@app.orchestration
async def parent_of_chain(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_sub_orchestration(chain, n)


def test_a_sequence_passes_between_no_threads(store, client):
    """The thread that runs an activity, once its outcome is queued, runs the next round
    itself (the turn its outcome wakes, which schedules the next activity) and then that
    activity: a sequence's steps, after its first, run on one activity thread, with no
    hand-over to the dispatch loop and back."""
    threads: list[str] = []

    def note_thread(point: str) -> None:
        if point == "run_round:before":
            threads.append(threading.current_thread().name)

    counting = FaultyStore(store, on_point=note_thread)
    with perdure.Worker(app, counting, poll_interval=0.05):  # type: ignore[arg-type]
        state = client.wait(client.start(chain, 30), timeout=20)
    assert state.output == 30
    on_activity_threads = [name for name in threads if name.startswith("perdure-activity")]
    assert len(on_activity_threads) >= 25, threads
    assert len(set(on_activity_threads)) == 1, threads


def test_an_activity_thread_runs_no_round_while_the_dispatch_loop_runs_one(store, client):
    """Activities that finish while a round runs (each round is held 20 ms inside its
    transaction here) leave their outcomes to the next round: the thread of each tries the
    dispatch loop's round lock, finds it taken, and wakes the loop instead. Two rounds of
    one loop never overlap, whichever threads run them."""
    running, most = [0], [0]
    lock = threading.Lock()

    def count(point: str) -> None:
        with lock:
            if point == "run_round:before":
                running[0] += 1
                most[0] = max(most[0], running[0])
            elif point == "run_round:after":
                running[0] -= 1

    slow = FaultyStore(store, [Fault("run_round:inside", "delay", times=None, seconds=0.02)], on_point=count)
    with perdure.Worker(app, slow, poll_interval=0.05):  # type: ignore[arg-type]
        ids = [client.start(fan, 20), *(client.start(chain, 5) for _ in range(4))]
        assert [client.wait(iid, timeout=60).output for iid in ids] == [sum(range(1, 21)), 5, 5, 5, 5]
    assert most[0] == 1


@app.orchestration
async def step_then_nap(ctx: perdure.OrchestrationContext, x: int) -> str:
    await ctx.call_activity(inc, x)
    await ctx.create_timer(timedelta(seconds=0.1))
    return "up"


def test_a_timer_set_by_a_round_on_an_activity_thread_wakes_the_dispatch_loop(store, client):
    """The round that records an activity's outcome runs on the activity's thread, and its
    turn sets a timer while the dispatch loop sleeps (``poll_interval`` 5 s here): the loop
    is woken to sleep only until the timer instead."""
    with perdure.Worker(app, store, poll_interval=5.0):
        client.wait(client.start(chain, 1), timeout=20)  # warm-up: the pool's thread exists
        started = time.monotonic()
        assert client.wait(client.start(step_then_nap, 1), timeout=20).output == "up"
        assert time.monotonic() - started < 2.5


def test_a_round_looks_for_a_parent_when_a_child_ends_and_not_after_a_top_level_end(store, client):
    """Where other processes' commits are signalled (PostgreSQL), the round that commits a
    child's last turn looks for new work: the child's report to its parent is then locked by
    the same transaction. The round that ends a top-level instance queues nothing and locks
    nothing (a statement fewer; its reads go with the COMMIT)."""
    if not store.notifier.every_process:
        pytest.skip("every round looks where other processes' commits are not signalled")
    ending: dict[str, list[int]] = {}
    run_round = store.run_round

    def spy(request):
        for commit in request.commits:
            if commit.status.is_terminal:
                ending.setdefault(commit.instance_id, []).append(request.orchestration_limit)
        return run_round(request)

    store.run_round = spy  # type: ignore[method-assign]
    with perdure.Worker(app, store, poll_interval=5.0):
        client.wait(client.start(chain, 1), timeout=20)  # a warm-up: the first look is done
        alone = client.start(chain, 2)
        assert client.wait(alone, timeout=20).output == 2  # alone: no other instance signals meanwhile
        parent = client.start(parent_of_chain, 2)
        assert client.wait(parent, timeout=20).output == 2
    [child] = [i for i in ending if i not in (alone, parent) and i.startswith(parent)]
    assert ending[alone] == [0]
    assert ending[child][0] > 0


def test_a_sequence_takes_each_next_task_as_its_turn_writes_it(store, client):
    """Where other processes' commits are signalled, the steps of a sequence look at neither
    queue: each round writes the task its turn schedules locked for the worker
    (``take_scheduled``), locks nothing from the queues and reads no due times, so that it
    is the turn's write and the COMMIT alone. Rounds with another cause (the first turn, a
    signal, ``poll_interval``) look as before."""
    if not store.notifier.every_process:
        pytest.skip("every round looks where other processes' commits are not signalled")
    requests = []
    run_round = store.run_round

    def spy(request):
        result = run_round(request)
        requests.append((request, result))
        return result

    store.run_round = spy  # type: ignore[method-assign]
    with perdure.Worker(app, store, poll_interval=5.0):
        client.wait(client.start(chain, 1), timeout=20)  # a warm-up: the first looks are done
        del requests[:]
        assert client.wait(client.start(chain, 20), timeout=20).output == 20
    steps = [(q, r) for q, r in requests if q.commits and not q.commits[0].status.is_terminal]
    quiet = [(q, r) for q, r in steps if q.activity_limit == 0 and q.orchestration_limit == 0 and not q.due_times]
    assert len(quiet) >= 15, [(q.activity_limit, q.orchestration_limit, q.due_times) for q, _ in steps]
    for q, r in quiet:
        assert q.take_scheduled > 0 and [t.task_id for t in r.activities] == [q.commits[0].activities[0].task_id]


def test_tasks_queued_before_a_turn_are_taken_before_the_tasks_it_schedules():
    """A round takes the tasks its turns schedule as it writes them only when the worker
    knows of no queued task it could take (its last look at the queue did not fill its
    limit, and no signal came since); else it looks, and the oldest tasks come first.
    Rounds run by hand, with room for one task."""
    clock = FakeClock()
    store = perdure.open_store("sqlite://:memory:", clock=clock)
    try:
        client = perdure.Client(store)
        worker = perdure.Worker(app, store, poll_interval=5.0, activity_concurrency=1)
        taken: list = []

        def round_() -> list[tuple[str, int]]:
            before = len(taken)
            worker.rounds.run(start=taken.extend)
            return [(t.instance_id, t.task_id) for t in taken[before:]]

        a = client.start(fan, 3)
        assert round_() == []  # locks a
        assert round_() == [(a, 1)]  # a's first turn: takes its first task as written, queues two
        b = client.start(chain, 1)
        assert round_() == [(a, 2)]  # signalled: looks, locks b, takes the oldest queued task
        # b's first turn schedules a task, but the last look filled its limit: it looks again.
        assert round_() == [(a, 3)]
        assert [t.lease_owner for t in store.activity_tasks(b)] == [None]
    finally:
        store.close()


slot_gate = threading.Event()


@app.activity
def inc_after_the_gate(x: int) -> int:
    assert slot_gate.wait(10)
    return x + 1


@app.orchestration
async def fan_after_the_gate(ctx: perdure.OrchestrationContext, n: int) -> int:
    return sum(await ctx.when_all([ctx.call_activity(inc_after_the_gate, i) for i in range(n)]))


def test_a_task_queued_while_every_activity_slot_is_taken_starts_when_one_frees(store, client):
    """Forced interleaving: with room for one activity, a fan-out of three runs one task, held
    at a gate, and queues two. Once the gate opens, the round that writes the outcome counts
    the room it frees: it takes the next queued task (which then runs on the same thread),
    instead of leaving it for a look ``poll_interval`` (60 s) later."""
    slot_gate.clear()
    with perdure.Worker(app, store, poll_interval=60, activity_concurrency=1):
        iid = client.start(fan_after_the_gate, 3)
        until(
            lambda: sorted(t.lease_owner is None for t in store.activity_tasks(iid)) == [False, True, True],
            what="the fan-out running one task and queuing two",
        )
        time.sleep(0.1)  # the loop is asleep again: nothing but the outcome's round can take them
        slot_gate.set()
        assert client.wait(iid, timeout=10).output == 1 + 2 + 3


def test_a_busy_worker_takes_what_another_process_starts_before_its_poll_interval(store_url, store, client):
    """A busy worker's rounds look for new instances only when something may have come, yet
    it takes an instance another process starts at once, not after ``poll_interval``:
    PostgreSQL signals it by LISTEN/NOTIFY, and a SQLite round sees that another connection
    wrote the file (``PRAGMA data_version``) and signals it for the next round."""
    other = perdure.Client(perdure.open_store(store_url))  # another process's: own connections, own signals
    try:
        with perdure.Worker(app, store, poll_interval=60):
            busy = client.start(chain, 10_000_000)
            deadline = time.monotonic() + 10
            while not any(isinstance(e, ActivityCompleted) for e in client.get(busy, history=True).history):
                assert time.monotonic() < deadline, "the long sequence never started"
                time.sleep(0.01)
            assert client.wait(other.start(chain, 3), timeout=10).output == 3
            assert client.get(busy).status == "RUNNING"  # taken while busy, not by an idle look
            client.terminate(busy)
    finally:
        other.store.close()


def test_two_dispatch_loops_run_every_step_exactly_once(store, client):
    with perdure.Worker(app, store, poll_interval=0.05, orchestration_concurrency=2, batch_size=4):
        ids = [client.start(fan, 30), *(client.start(chain, 5) for _ in range(10))]
        states = [client.wait(iid, timeout=60) for iid in ids]
    assert [s.output for s in states] == [sum(range(1, 31)), *[5] * 10]
    for s in states:
        history = client.get(s.instance_id, history=True).history
        completed = [e.task_id for e in history if isinstance(e, ActivityCompleted)]
        assert len(completed) == len(set(completed))


def test_an_idle_worker_does_not_spin_on_work_it_cannot_take(store, client):
    """A message due for an orchestration this worker does not run stays due; the worker
    looks again on a signal or every ``poll_interval``, not in a tight loop."""
    iid = client.start("runs_elsewhere", None)
    counting = FaultyStore(store)
    with perdure.Worker(app, counting, poll_interval=0.1):  # type: ignore[arg-type]
        time.sleep(0.6)
    assert counting.hits["run_round:before"] <= 10  # about one per poll_interval
    assert client.get(iid).status == "PENDING" and len(store.pending_messages(iid)) == 1


@app.orchestration
async def naps(ctx: perdure.OrchestrationContext, seconds: float) -> str:
    await ctx.create_timer(timedelta(seconds=seconds))
    return "up"


@contextmanager
def a_timer_set_by_rounds_run_by_hand() -> Iterator[tuple[FakeClock, perdure.Client, perdure.Worker, str]]:
    """A worker (not started: its rounds are run by hand) on a store with a fake clock,
    after the rounds that lock a ``naps(0.1)`` instance and run its first turn, which sets a
    timer due at t+0.1."""
    clock = FakeClock()
    store = perdure.open_store("sqlite://:memory:", clock=clock)
    try:
        client = perdure.Client(store)
        worker = perdure.Worker(app, store, poll_interval=5.0)
        iid = client.start(naps, 0.1)
        worker.rounds.run()  # locks the instance
        worker.rounds.run()  # its first turn creates the timer
        yield clock, client, worker, iid
    finally:
        store.close()


def test_work_that_comes_due_while_a_round_runs_is_taken_at_once():
    """Issue 16, item 8: a timer that comes due while a round runs (after the round read the
    queue, before its worker would go to sleep) is taken at once, not after a whole
    ``poll_interval``. The round reads at t+0.05 that the timer is due at t+0.1; when the
    worker decides how long to sleep it is t+0.2.

    Pinned by the round's reading of when it looked (``RoundResult.messages_seen_at``):
    without it, work already due by the worker's clock was taken for work it cannot run,
    and the worker slept ``poll_interval`` (5 s here)."""
    with a_timer_set_by_rounds_run_by_hand() as (clock, client, worker, iid):
        clock.advance(0.05)
        report = worker.rounds.run()
        assert report.next_due == pytest.approx(clock() + 0.05)
        clock.advance(0.15)
        assert worker._idle_timeout(report) == pytest.approx(0.0, abs=0.002)
        assert worker.rounds.run().claimed == 1 and worker.rounds.run().turns == 1
        assert client.get(iid).output == "up"
        idle = worker.rounds.run()  # nothing due, nothing queued: sleep the whole poll
        assert idle.next_due is None and worker._idle_timeout(idle) == 5.0


def test_work_that_comes_due_after_a_round_decided_not_to_look_is_taken_next_round():
    """Where every process's commits are signalled, a round decides before its transaction
    whether to look for new instances. A timer that comes due between that decision and the
    transaction's reading of the clock shows up due in the round's reading, though the round
    did not look: that is work for the next round, which looks at once, not work this worker
    cannot take (it slept ``poll_interval`` then, 5 s here).

    Pinned by ``LookOut.seen_at``: only what was due when the last look read the queue is
    work the worker cannot take."""
    with a_timer_set_by_rounds_run_by_hand() as (clock, client, worker, iid):
        looks = worker.rounds.looks
        decide = looks.begin

        def decide_then_let_the_timer_come_due(commits=()):
            looked = decide(commits)
            clock.advance(0.15)
            return looked

        looks.begin = decide_then_let_the_timer_come_due  # type: ignore[method-assign]
        report = worker.rounds.run()
        looks.begin = decide  # type: ignore[method-assign]
        assert report.claimed == 0 and report.next_due is not None and report.next_due <= clock()
        assert worker._idle_timeout(report) == pytest.approx(0.0, abs=0.002)
        assert worker.rounds.run().claimed == 1 and worker.rounds.run().turns == 1
        assert client.get(iid).output == "up"


@app.activity
def fails_first(x: int) -> int:
    if perdure.activity_info().attempt == 1:
        raise RuntimeError("first attempt fails")
    return x


@app.orchestration
async def retries_soon(ctx: perdure.OrchestrationContext, x: int) -> int:
    policy = perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=0.1))
    return await ctx.call_activity(fails_first, x, retry=policy)


def test_timers_in_many_instances_fire_close_to_their_time(store, client):
    """Several instances' 100 ms timers and retry back-off timers all fire long before a
    missed wake-up (``poll_interval`` 5 s) could make them."""
    with perdure.Worker(app, store, poll_interval=5.0):
        started = time.monotonic()
        ids = [client.start(naps, 0.1) for _ in range(6)] + [client.start(retries_soon, n) for n in range(4)]
        outputs = [client.wait(iid, timeout=20).output for iid in ids]
        assert time.monotonic() - started < 2.5
    assert outputs == ["up"] * 6 + [0, 1, 2, 3]
