"""The worker's rounds: one store transaction records finished activities, runs and
commits the due turns, and takes the activity tasks those turns schedule."""

from __future__ import annotations

import time

import perdure
from perdure.core.history import ActivityCompleted
from perdure.testing import FaultyStore

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


def test_two_dispatch_loops_run_every_step_exactly_once(store, client):
    with perdure.Worker(app, store, poll_interval=0.05, orchestration_concurrency=2, batch_size=4):
        ids = [client.start(fan, 30), *(client.start(chain, 5) for _ in range(10))]
        states = [client.wait(iid, timeout=20) for iid in ids]
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
