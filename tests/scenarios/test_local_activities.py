"""Local activities (``@app.activity(local=True)``): run by the worker inside the turn that
schedules them, their completions fed to the next turn at once, the whole chain committed
in one transaction (or not at all) under the instance's lease."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

import perdure
from perdure.core.history import ActivityCompleted, ActivityFailed, ActivityScheduled, TurnStarted
from perdure.testing import FakeClock, Fault, FaultyStore, StepWorker

app = perdure.App()
# Where a test counts local runs: a budget no loaded test machine exceeds, so no chain is
# cut short and its next step queued as an ordinary task.
UNCUT = {"poll_interval": 0.05, "local_activity_budget": 30.0}
calls: Counter[str] = Counter()
calls_lock = threading.Lock()
inside_inc: list[Callable[[], None]] = []  # each runs once, inside the next ``inc`` call


def count(name: str) -> None:
    with calls_lock:
        calls[name] += 1


@pytest.fixture(autouse=True)
def fresh_calls():
    calls.clear()
    inside_inc.clear()


@app.activity(local=True)
def inc(x: int) -> int:
    count("inc")
    if inside_inc:
        inside_inc.pop(0)()
    return x + 1


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.activity(local=True)
async def async_inc(x: int) -> int:
    return x + 1


@app.activity(local=True)
def flaky(fail_times: int) -> int:
    info = perdure.activity_info()
    if info.attempt <= fail_times:
        raise ConnectionError(f"attempt {info.attempt} failed")
    return info.attempt


@app.activity(local=True)
def slow_inc(x: int) -> int:
    time.sleep(0.06)
    return x + 1


@app.activity(local=True)
def mutate(items: list) -> list:
    items.append("changed by the activity")
    return items


@app.activity(local=True)
def not_json(_: object) -> object:
    return {1, 2}


@app.activity(local=True)
def info(_: object) -> dict:
    i = perdure.activity_info()
    return {"instance_id": i.instance_id, "task_id": i.task_id, "attempt": i.attempt, "worker_id": i.worker_id}


@app.orchestration
async def chain(ctx: perdure.OrchestrationContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(inc, x)
    return x


@app.orchestration
async def slow_chain(ctx: perdure.OrchestrationContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(slow_inc, x)
    return x


@app.orchestration
async def mixed(ctx: perdure.OrchestrationContext, n: int) -> list:
    x = await ctx.call_activity(inc, n)
    y = await ctx.call_activity(double, x)  # an ordinary activity: through the task queue
    z = await ctx.call_activity(async_inc, y)
    both = await ctx.when_all([ctx.call_activity(inc, z), ctx.call_activity(double, z)])
    return [x, y, z, both]


@app.orchestration
async def retrying(ctx: perdure.OrchestrationContext, fail_times: int) -> int:
    policy = perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(milliseconds=10))
    return await ctx.call_activity(flaky, fail_times, retry=policy)


@app.orchestration
async def retry_then_wait(ctx: perdure.OrchestrationContext, _: object) -> object:
    policy = perdure.RetryPolicy(max_attempts=2, first_delay=timedelta(seconds=10))
    await ctx.call_activity(flaky, 1, retry=policy)
    return await ctx.wait_for_event("never")


@app.orchestration
async def isolated(ctx: perdure.OrchestrationContext, _: object) -> dict:
    mine = ["mine"]
    theirs = await ctx.call_activity(mutate, mine)
    return {"mine": mine, "theirs": theirs}


@app.orchestration
async def bad_result(ctx: perdure.OrchestrationContext, _: object) -> str:
    try:
        await ctx.call_activity(not_json, None)
    except perdure.ActivityError as err:
        return f"{err.failure.type}: {err.failure.message}"
    return "no error"


@app.orchestration
async def who(ctx: perdure.OrchestrationContext, _: object) -> dict:
    return await ctx.call_activity(info, None)


def completions(client: perdure.Client, iid: str) -> list[int]:
    history = client.get(iid, history=True).history
    return [e.task_id for e in history if isinstance(e, ActivityCompleted)]


def test_a_chain_of_local_activities_commits_in_one_round(store, client):
    """20 sequential steps: one round for the whole chain (an ordinary activity takes one
    per step), and a history exactly as if they had gone through the queue."""
    counting = FaultyStore(store)
    with perdure.Worker(app, counting, **UNCUT) as worker:  # type: ignore[arg-type]
        iid = client.start(chain, 20)
        state = client.wait(iid, timeout=20)
    assert state.status == "COMPLETED" and state.output == 20
    assert counting.hits["run_round:before"] <= 5
    assert worker.stats()["local_activities"] == 20 and "activities" not in worker.stats()
    history = client.get(iid, history=True).history
    scheduled = [e.task_id for e in history if isinstance(e, ActivityScheduled)]
    assert scheduled == completions(client, iid) == list(range(1, 21))
    assert sum(isinstance(e, TurnStarted) for e in history) == 21  # one turn per step, as ever
    assert store.activity_tasks(iid) == []


def test_local_and_ordinary_activities_mix(store, client):
    with perdure.Worker(app, store, **UNCUT) as worker:
        state = client.wait(client.start(mixed, 1), timeout=20)
    assert state.output == [2, 4, 5, [6, 10]]
    stats = worker.stats()
    assert stats["local_activities"] == 3 and stats["activities"] == 2


def test_every_turn_replays_from_history_without_the_cache(store, client):
    """With the state cache off, each turn replays the history the chain wrote: the
    recorded local completions must replay deterministically."""
    with perdure.Worker(app, store, poll_interval=0.05, cache_size=0) as worker:
        state = client.wait(client.start(mixed, 1), timeout=20)
    assert state.status == "COMPLETED" and state.output == [2, 4, 5, [6, 10]]
    assert worker.stats()["full_replays"] >= 2


def test_a_failing_local_activity_is_retried_by_its_policy(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        ok = client.wait(client.start(retrying, 2), timeout=20)
        failed = client.wait(client.start(retrying, 5), timeout=20)
    assert ok.status == "COMPLETED" and ok.output == 3
    history = client.get(ok.instance_id, history=True).history
    assert [e.attempt for e in history if isinstance(e, ActivityScheduled)] == [1, 2, 3]
    assert sum(isinstance(e, ActivityFailed) for e in history) == 2
    assert failed.status == "FAILED" and "attempt 3 failed" in failed.failure.message


def test_a_retry_that_succeeds_in_a_chain_counts_as_progress(store_url):
    """The turn woken by the retry timer (not progress in itself) runs the retried local
    activity, which succeeds: diagnosis must see that turn as the instance's last progress."""
    clock = FakeClock()
    store = perdure.open_store(store_url, clock=clock)
    try:
        # A budget no loaded machine spends: the retried activity always runs inside the turn.
        worker = StepWorker(app, store, "w", local_activity_budget=30.0)
        iid = perdure.Client(store).start(retry_then_wait, None)
        started = clock()
        assert worker.turns() == 1  # attempt 1 fails, a retry timer is set
        assert store.get_instance(iid).stats.last_progress_at == started
        clock.advance(60)
        assert worker.turns() == 1  # the timer fires, attempt 2 succeeds, the event is awaited
        record = store.get_instance(iid)
        assert record.waiting_on.events and record.stats.last_progress_at == started + 60
    finally:
        store.close()


def test_a_local_activity_gets_its_input_as_json_and_a_bad_result_fails_it(store, client):
    """The activity gets a decoded copy of its input, as from the queue: mutating it does
    not reach into the orchestrator. A result that is not JSON fails the activity."""
    with perdure.Worker(app, store, poll_interval=0.05):
        iso = client.wait(client.start(isolated, None), timeout=20)
        bad = client.wait(client.start(bad_result, None), timeout=20)
    assert iso.output == {"mine": ["mine"], "theirs": ["mine", "changed by the activity"]}
    assert bad.output.startswith("perdure.errors.SerializationError: result of activity 'not_json'")


def test_activity_info_inside_a_local_activity(store, client):
    with perdure.Worker(app, store, worker_id="w-local", poll_interval=0.05):
        iid = client.start(who, None)
        state = client.wait(iid, timeout=20)
    assert state.output == {"instance_id": iid, "task_id": 1, "attempt": 1, "worker_id": "w-local"}


def test_a_chain_whose_commit_fails_runs_again_and_is_recorded_once(store, client):
    """Invariant 1 for chains: the first round that commits the chain fails inside its
    transaction, so nothing of it is written. The worker runs it again (each activity a
    second time: at-least-once) and the history holds each completion once."""
    iid = client.start(chain, 3)  # before the worker: its first round runs the chain
    commits_turns = Fault("run_round:inside", "raise", when=lambda call: bool(call.commits))
    faulty = FaultyStore(store, [commits_turns])
    with perdure.Worker(app, faulty, poll_interval=0.02):  # type: ignore[arg-type]
        state = client.wait(iid, timeout=20)
    assert faulty.fired == ["run_round:inside"]
    assert state.output == 3
    assert calls["inc"] == 6
    assert completions(client, iid) == [1, 2, 3]


def test_a_chain_whose_lease_was_taken_over_writes_nothing(store_url):
    """Invariant 2 for chains: w1 locks the instance and, while its chain runs (inside the
    local activity), its lease expires and w2 takes the instance over. w1's commit is
    refused whole; w2 runs the chain again and its commit stands, with one completion."""
    clock = FakeClock()
    store = perdure.open_store(store_url, clock=clock)
    try:
        client = perdure.Client(store)
        w1 = StepWorker(app, store, "w1", lease_seconds=10, local_activity_budget=30.0)
        w2 = StepWorker(app, store, "w2", lease_seconds=10, local_activity_budget=30.0)
        iid = client.start(chain, 1)
        assert w1.lock_turns() == 1

        def take_over() -> None:
            clock.advance(11)
            assert w2.lock_turns() == 1

        inside_inc.append(take_over)
        assert w1.run_turns() == 1
        assert w1.stats()["turns_lease_lost"] == 1
        assert store.get_history(iid) == []
        assert w2.run_turns() == 1
        state = client.get(iid)
        assert state.status == "COMPLETED" and state.output == 1
        assert calls["inc"] == 2 and completions(client, iid) == [1]
    finally:
        store.close()


def test_the_budget_sends_local_activities_to_the_queue(store, client):
    """With no budget, local activities go through the task queue like any other."""
    with perdure.Worker(app, store, poll_interval=0.05, local_activity_budget=0) as worker:
        state = client.wait(client.start(chain, 5), timeout=20)
    assert state.output == 5
    assert worker.stats()["activities"] == 5 and "local_activities" not in worker.stats()


def test_a_chain_stops_at_the_budget_and_goes_on_after_the_queued_step(store, client):
    """Each step takes 60 ms against a 50 ms budget: a round runs one local step, sends the
    next one to the queue as an ordinary task, and the turn woken by that task's result
    chains the following step again."""
    with perdure.Worker(app, store, poll_interval=0.05, local_activity_budget=0.05) as worker:
        iid = client.start(slow_chain, 4)
        state = client.wait(iid, timeout=20)
    assert state.output == 4
    stats = worker.stats()
    assert stats["local_activities"] == 2 and stats["activities"] == 2
    assert completions(client, iid) == [1, 2, 3, 4]


def test_turns_past_the_budget_wait_for_the_next_round_and_run_their_steps_inline(store, client):
    """Five instances locked in one round, each with one 60 ms local step, against a 100 ms
    budget: a round runs the turns it has time for and keeps the others locked for the next
    round, where their steps run inline; none is sent to the task queue (run at once, their
    steps would find the budget spent)."""
    ids = client.start_many(slow_chain, [1] * 5)
    with perdure.Worker(app, store, poll_interval=0.05, local_activity_budget=0.1) as worker:
        states = [client.wait(iid, timeout=20) for iid in ids]
    assert [s.output for s in states] == [1] * 5
    stats = worker.stats()
    assert stats["local_activities"] == 5 and "activities" not in stats


def test_a_worker_without_the_activity_queues_it_for_one_with_it(store, client):
    """``local`` is a property of the activity's registration: a worker that runs the
    orchestration but not the activity schedules an ordinary task, and a worker that has
    the activity runs it from the queue."""
    orchestrations_only = perdure.App()
    orchestrations_only.orchestration(chain)
    activities_only = perdure.App()
    activities_only.activity(local=True)(inc)
    with (
        perdure.Worker(orchestrations_only, store, poll_interval=0.05),
        perdure.Worker(activities_only, store, poll_interval=0.05) as runner,
    ):
        state = client.wait(client.start(chain, 3), timeout=20)
    assert state.output == 3 and runner.stats()["activities"] == 3


def test_bad_local_settings_are_refused():
    with pytest.raises(perdure.RegistrationError, match="local= must be True or False, got 'yes'"):
        perdure.App().activity(local="yes")  # type: ignore[arg-type]
    store = perdure.open_store("sqlite://:memory:")
    try:
        with pytest.raises(perdure.InvalidInputError, match="local_activity_budget must be a non-negative"):
            perdure.Worker(app, store, local_activity_budget=-1)
    finally:
        store.close()


# The client a local activity writes through, set by the test that uses it.
writer: list[perdure.Client] = []


@app.orchestration
async def sidekick(ctx: perdure.OrchestrationContext, _: None) -> str:
    return "started"


@app.activity(local=True)
def start_sidekick(eager: bool) -> str:
    try:
        writer[0].start(sidekick, None, eager=eager)
    except perdure.StoreError as exc:
        return f"refused: {exc}"
    return "started"


@app.orchestration
async def starts_from_a_local_activity(ctx: perdure.OrchestrationContext, eager: bool) -> str:
    return await ctx.call_activity(start_sidekick, eager)


@pytest.mark.parametrize("eager", [False, True])
def test_a_local_activity_can_write_to_its_own_store(store, client, eager):
    """A local activity runs while no store transaction is open (invariant 10), so it may
    write through a client like any code: here it starts another instance. Pinned: on
    SQLite the round used to hold its write transaction while local activities ran, and
    such a write was refused."""
    writer[:] = [client]
    try:
        with perdure.Worker(app, store, **UNCUT):
            state = client.wait(client.start(starts_from_a_local_activity, eager), timeout=20)
            assert (state.status, state.output) == ("COMPLETED", "started")
            [side] = client.list(name="sidekick").items
            assert client.wait(side.instance_id, timeout=20).output == "started"
    finally:
        writer.clear()


# Set while ``sleepy`` runs.
sleeping = threading.Event()
woken = threading.Event()


@app.activity(local=True)
def sleepy(seconds: float) -> float:
    """Sleep until the test wakes it (at most ``seconds``)."""
    sleeping.set()
    woken.wait(seconds)
    return seconds


@app.orchestration
async def sleeps_locally(ctx: perdure.OrchestrationContext, seconds: float) -> float:
    return await ctx.call_activity(sleepy, seconds)


_WRITE_FROM_ANOTHER_PROCESS = """
import sys, time
import perdure
client = perdure.Client(perdure.open_store(sys.argv[1]))
started = time.monotonic()
client.raise_event(sys.argv[2], "meanwhile", None)
print(time.monotonic() - started)
"""


def test_a_long_local_activity_does_not_stall_another_process_writing_the_same_sqlite_file(tmp_path):
    """Invariant 10: while a local activity runs, a client in another process writes to the
    same SQLite file at once (it would otherwise wait for the round's write lock, ``BEGIN
    IMMEDIATE``, until the activity returned: here, until the store's 10 s busy timeout
    fails it, since the activity returns only once the write is done)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/shared.db"
    store = perdure.open_store(url)
    client = perdure.Client(store)
    sleeping.clear()
    woken.clear()
    try:
        # Starts queued: a start run by the idle worker would return only after this first
        # turn's local activity, which waits for the test.
        with perdure.Worker(app, store, **UNCUT, run_local_starts=False):
            iid = client.start(sleeps_locally, 60.0)
            assert sleeping.wait(10)
            done = subprocess.run(
                [sys.executable, "-c", _WRITE_FROM_ANOTHER_PROCESS, url, iid],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            assert float(done.stdout) < 5.0, done.stdout  # not a wait for the store's write lock
            assert client.get(iid).status == "PENDING"  # the activity is still running
            woken.set()
            assert client.wait(iid, timeout=20).output == 60.0
    finally:
        store.close()


# The worker an activity tries to stop, set by the test that uses it.
stopping: list[perdure.Worker] = []


def _stop_own_worker() -> str:
    try:
        stopping[0].stop()
    except perdure.PerdureError as exc:
        return f"refused: {exc}"
    return "stopped"


@app.activity(name="stop_from_local", local=True)
def stop_from_local(_: None) -> str:
    return _stop_own_worker()


@app.activity(name="stop_from_queued")
def stop_from_queued(_: None) -> str:
    return _stop_own_worker()


@app.orchestration
async def stops_its_worker(ctx: perdure.OrchestrationContext, _: None) -> list[str]:
    return [await ctx.call_activity(stop_from_local, None), await ctx.call_activity(stop_from_queued, None)]


def test_an_activity_cannot_stop_the_worker_running_it(store, client):
    """``stop()`` waits for running activities: from inside one (a local activity runs on
    the dispatch thread stop() would join) it would wait for itself. It is refused."""
    with perdure.Worker(app, store, **UNCUT) as worker:
        stopping[:] = [worker]
        try:
            state = client.wait(client.start(stops_its_worker, None), timeout=20)
        finally:
            stopping.clear()
        assert worker.is_running
    assert [o.split(":")[0] for o in state.output] == ["refused", "refused"]
    assert "called from inside activity 'stop_from_local'" in state.output[0]
