"""A run is not its id (invariant 9): reusing an instance id never lets one run's messages,
children or cached state reach another run.

Each run of an id (a start, a start after a purge, a ``replace_terminal`` start, a
child's retry under its explicit id) has a run token, carried by its children's parent
reference, by every message addressed to it and by the state cache's key. The tests below
are the scenarios of issue 16 (item 1: purge + start, replace while a child runs, a stale
cached coroutine; item 3: a terminate cascades only to the parent's own children; item
4: a child with an explicit id can be retried), forced step by step with
:class:`~perdure.testing.StepWorker` on both stores. Each names the guard it pins.
"""

from __future__ import annotations

from datetime import timedelta

import perdure
from perdure.core.history import DiscardReason, ExecutionStarted, MessageDiscarded
from perdure.core.ids import child_instance_id
from perdure.testing import FakeClock, StepWorker, drain
from tests.races.helpers import events

app = perdure.App()


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.orchestration
async def doubler(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, x)


@app.orchestration
async def with_child(ctx: perdure.OrchestrationContext, x: int) -> list[int]:
    return [x, await ctx.call_sub_orchestration(doubler, x)]


@app.orchestration
async def waits_then_doubles(ctx: perdure.OrchestrationContext, x: int) -> int:
    await ctx.wait_for_event("go")
    return 2 * x


@app.orchestration
async def races_a_timer(ctx: perdure.OrchestrationContext, x: int) -> list[object]:
    """Completes when its timer wins, leaving its child running."""
    child = ctx.call_sub_orchestration(waits_then_doubles, x)
    winner = await ctx.when_any([child, ctx.create_timer(timedelta(seconds=10))])
    return [x, child.result if winner is child else "timer"]


@app.orchestration
async def two_events(ctx: perdure.OrchestrationContext, x: int) -> list[object]:
    return [x, await ctx.wait_for_event("go"), await ctx.wait_for_event("go")]


def settle(worker: StepWorker) -> None:
    """Run turns and activities until there is nothing left to do now (the clock stays)."""
    while worker.turns() + worker.activities():
        pass


def test_a_restart_after_a_purge_runs_its_own_child(clocked_store, clocked_client, clock: FakeClock) -> None:
    """Item 1: ``P`` completes with its child; ``purge("P")``; ``P`` starts again with
    another input: the new run starts a child of its own and completes with its result.

    Pinned by the run in generated child ids (``child_instance_id``): with the run left
    out, the new run's child id is held by the old run's child and the restart fails (it
    waited forever before the store checked taken ids).
    """
    worker = StepWorker(app, clocked_store, "w1")
    clocked_client.start(with_child, 1, instance_id="P")
    drain(worker, clock, until=["P"])
    assert clocked_client.get("P").output == [1, 2]
    clocked_client.purge("P")
    clocked_client.start(with_child, 5, instance_id="P")
    drain(worker, clock, until=["P"])
    state = clocked_client.get("P")
    assert (state.status, state.output) == ("COMPLETED", [5, 10])
    children = clocked_client.list(parent_instance_id="P").items
    assert sorted(c.output for c in children) == [2, 10]  # each run had its own


def test_a_replaced_run_never_receives_the_old_runs_child_result(
    clocked_store, clocked_client, clock: FakeClock
) -> None:
    """Item 1: ``P`` ends while its child still runs (its timer wins a ``when_any``); ``P`` is
    started again with ``replace_terminal``. When the old child finishes, its result is
    addressed to the old run: discarded with a ``stale_run`` record. The new run gets its
    own child's result.

    Pinned by ``route_messages``'s run check (``perdure.store.common.routing``): without
    it, the old child's result completes the new run's child task of the same number.
    """
    worker = StepWorker(app, clocked_store, "w1")
    clocked_client.start(races_a_timer, 1, instance_id="P")
    drain(worker, clock)
    run1 = clocked_client.get("P")
    old_child = child_instance_id("P", run1.run_id, 1, 1)
    assert clocked_client.get(old_child).status == "RUNNING"
    clock.advance(11)  # the timer wins: run 1 completes, its child still runs
    drain(worker, clock, until=["P"])
    assert clocked_client.get("P").output == [1, "timer"]

    clocked_client.start(races_a_timer, 7, instance_id="P", replace_terminal=True)
    settle(worker)
    run2 = clocked_client.get("P")
    assert run2.run_id != run1.run_id and run2.execution_id == run1.execution_id + 1
    clocked_client.raise_event(old_child, "go")  # the old run's child finishes now
    settle(worker)
    [stale] = [d for d in clocked_store.discarded_messages(instance_id="P") if d.reason == DiscardReason.STALE_RUN]
    assert stale.event.result == 2 and stale.run_id == run1.run_id
    assert clocked_client.get("P").status == "RUNNING"  # untouched by it
    new_child = child_instance_id("P", run2.run_id, run2.execution_id, 1)
    clocked_client.raise_event(new_child, "go")
    drain(worker, clock, until=["P"])
    assert clocked_client.get("P").output == [7, 14]


def test_a_worker_never_resumes_an_old_runs_cached_coroutine(clocked_store, clocked_client, clock: FakeClock) -> None:
    """Item 1: worker A caches run 1 of ``X``; run 1 finishes on worker B; ``X`` is purged and
    started again, and run 2's first turn runs on B, leaving a history as long as the one A
    holds. A's next turn must replay run 2, not resume run 1's coroutine with run 2's
    messages.

    Pinned by the run in the state cache's key: the cache drops an entry of another run
    (``ExecutorCache.take``) and the store sends the whole history when the caller's known
    history is another run's (``known_history``). Either guard alone keeps this correct;
    with both removed, A's turn resumes run 1 (input 1) and run 2 ends with ``[1, ...]``
    (checked).
    """
    a, b = StepWorker(app, clocked_store, "A"), StepWorker(app, clocked_store, "B")
    clocked_client.start(two_events, 1, instance_id="X")
    assert a.turns() == 1  # A caches run 1 after its first turn
    clocked_client.raise_event("X", "go", "one")
    clocked_client.raise_event("X", "go", "two")
    assert b.turns() == 1 and clocked_client.get("X").output == [1, "one", "two"]
    clocked_client.purge("X")
    clocked_client.start(two_events, 2, instance_id="X")
    assert b.turns() == 1  # run 2, first turn: as many events as A holds of run 1
    assert len(a.worker.cache) == 1
    clocked_client.raise_event("X", "go", "three")
    clocked_client.raise_event("X", "go", "four")
    assert a.turns() == 1
    state = clocked_client.get("X")
    assert (state.status, state.output) == ("COMPLETED", [2, "three", "four"])


@app.orchestration
async def parent_of_inventory(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.call_sub_orchestration(doubler, 3, instance_id="inventory")


@app.orchestration
async def standalone(ctx: perdure.OrchestrationContext, _: None) -> str:
    return await ctx.wait_for_event("done")


def test_a_terminate_cascades_only_to_the_parents_own_child(clocked_store, clocked_client, clock: FakeClock) -> None:
    """Item 3: ``P`` started child ``inventory``; a terminate of ``P`` is queued; the child
    completes, is purged, and a standalone instance takes the id ``inventory``; then ``P``
    applies the terminate (before the child's completion, in enqueue order) and cascades
    to ``inventory``. The standalone instance is not ``P``'s child: the cascade is
    discarded with a ``not_a_child`` record and it keeps running.

    Pinned by the parent named in a cascading terminate (``ExecutionTerminated.parent``,
    checked by the executor's ``_refusal``): without it the standalone instance ends
    TERMINATED.
    """
    worker = StepWorker(app, clocked_store, "w1")
    clocked_client.start(parent_of_inventory, None, instance_id="P")
    assert worker.turns_of("P") == 1  # P starts its child
    clocked_client.terminate("P", "stop the parent")
    assert worker.turns_of("inventory") == 1 and worker.activities() == 1
    assert worker.turns_of("inventory") == 1  # the child completes and reports, after the terminate
    assert clocked_client.get("inventory").status == "COMPLETED"
    clocked_client.purge("inventory")
    clocked_client.start(standalone, None, instance_id="inventory")
    drain(worker, clock)
    assert clocked_client.get("P").status == "TERMINATED"
    assert clocked_client.get("inventory").status == "RUNNING"
    [record] = [e for e in events(clocked_store, "inventory") if isinstance(e, MessageDiscarded)]
    assert (record.reason, record.message["reason"]) == (
        DiscardReason.NOT_A_CHILD,
        "parent instance 'P' was terminated: stop the parent",
    )
    clocked_client.raise_event("inventory", "done", "fine")
    drain(worker, clock, until=["inventory"])
    assert clocked_client.get("inventory").output == "fine"


attempts: list[int] = []


@app.activity
def fails_twice(x: int) -> int:
    attempts.append(x)
    if len(attempts) <= 2:
        raise RuntimeError(f"attempt {len(attempts)} fails")
    return x * 10


@app.orchestration
async def job(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(fails_twice, x)


@app.orchestration
async def retries_job_42(ctx: perdure.OrchestrationContext, x: int) -> int:
    policy = perdure.RetryPolicy(max_attempts=5, first_delay=timedelta(seconds=1))
    return await ctx.call_sub_orchestration(job, x, instance_id="job-42", retry=policy)


def test_a_child_with_an_explicit_id_is_retried_as_new_runs_of_that_id(
    clocked_store, clocked_client, clock: FakeClock
) -> None:
    """Item 4: the child ``job-42`` fails twice; each retry replaces the failed attempt's
    instance with a new run of the same id, and the parent completes once an attempt
    succeeds. Every attempt's history stays readable.

    Pinned by ``child_start_rule``'s REPLACE (a terminal child of the same parent): without
    it the second attempt finds the id taken and the parent fails.
    """
    attempts.clear()
    worker = StepWorker(app, clocked_store, "w1")
    clocked_client.start(retries_job_42, 4, instance_id="parent")
    drain(worker, clock, until=["parent"])
    state = clocked_client.get("parent")
    assert (state.status, state.output) == ("COMPLETED", 40)
    child = clocked_client.get("job-42")
    assert (child.status, child.execution_id) == ("COMPLETED", 3)  # the third run
    runs = [next(e for e in events(clocked_store, "job-42", n) if isinstance(e, ExecutionStarted)) for n in (1, 2, 3)]
    assert len({e.run_id for e in runs}) == 3
    assert [e.parent.task_id for e in runs] == sorted({e.parent.task_id for e in runs})  # one task per attempt
