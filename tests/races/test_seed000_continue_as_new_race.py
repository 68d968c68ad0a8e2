"""seeds/000: the continue-as-new race.

In the other engine, an orchestration continued as new; the first activity of the new
execution completed and its ``TaskCompleted`` was read while the store still showed the
old execution; the message was judged "not out of order", the new execution was not found,
and the message was deleted: the orchestration stayed Running forever.

perdure pins the two guards that make this impossible (invariants 1 and 3):

- the turn that continues as new, the new execution and its start message become visible
  in one commit, and the new execution's first activity only exists after it;
- a message for an execution (or an instance) that does not exist yet is deferred with
  backoff, never deleted; after a bounded number of tries it is dead-lettered.
"""

from __future__ import annotations

import threading

import perdure
from perdure.core.history import (
    ActivityCompleted,
    ContinuedAsNew,
    EventRaised,
    ExecutionStarted,
)
from perdure.store.base import DeadLetterReason, Message
from perdure.testing import FakeClock, Fault, FaultyStore, StepWorker, WriteCall, drain
from tests.races.helpers import events, of_type, until

app = perdure.App()


@app.activity
def first_step(round_: int) -> str:
    return f"real-{round_}"


@app.orchestration
async def renewing(ctx: perdure.OrchestrationContext, state: dict) -> str:
    """Execution 1 waits for "go" and continues as new; execution 2 runs one activity."""
    if state["round"] == 0:
        await ctx.wait_for_event("go")
        ctx.continue_as_new({"round": 1})
    return await ctx.call_activity(first_step, state["round"])


@app.orchestration
async def greeter(ctx: perdure.OrchestrationContext, _: None) -> str:
    return await ctx.wait_for_event("hello")


def continues_as_new(call: WriteCall) -> bool:
    """A worker round that commits a continue-as-new turn."""
    return any(commit.continue_as_new for commit in call.commits)


def test_the_new_execution_and_its_first_activity_appear_only_with_the_commit(store):
    """Invariant 1 (atomic turn). The worker is held *inside* the transaction that
    continues as new (a fault hook waiting on an Event): a reader then still sees execution
    1, its history and no trace of execution 2 (no start message, no history, no activity
    task). Once released, everything appears at once and the orchestration completes;
    execution 1's history is kept.

    Verified: with the continue-as-new commit split in two (the outbound messages committed
    in a transaction of their own before the instance row, as the other engine did), the
    reader sees execution 2's ``ExecutionStarted`` queued while the row still says
    execution 1 and the first assertion block fails.
    """
    client = perdure.Client(store)
    inside, release = threading.Event(), threading.Event()

    def hold(_point: str) -> None:
        inside.set()
        assert release.wait(10), "the test never released the commit"

    faulty = FaultyStore(store, [Fault("run_round:inside", hold, when=continues_as_new)])
    iid = client.start(renewing, {"round": 0}, instance_id="renewing")
    with perdure.Worker(app, faulty, poll_interval=0.05):
        until(lambda: client.get(iid).waiting_on.events, what="execution 1 waiting for go")
        client.raise_event(iid, "go")
        assert inside.wait(10)
        try:
            seen = store.get_instance(iid)
            assert (seen.execution_id, seen.status) == (1, perdure.OrchestrationStatus.RUNNING)
            assert not [m for m in store.pending_messages(iid) if m.execution_id == 2]
            assert store.activity_tasks(iid) == []
            assert store.get_history(iid, execution_id=2) == []
            assert not of_type(events(store, iid, 1), ContinuedAsNew)
        finally:
            release.set()
        state = client.wait(iid, timeout=10)
    assert (state.status, state.output, state.execution_id) == ("COMPLETED", "real-1", 2)
    first = events(store, iid, 1)
    assert isinstance(first[1], ExecutionStarted) and isinstance(first[-1], ContinuedAsNew)
    assert [e.result for e in of_type(events(store, iid, 2), ActivityCompleted)] == ["real-1"]


def test_a_completion_for_an_execution_not_visible_yet_is_deferred_then_delivered(
    clocked_store, clocked_client, clock: FakeClock
):
    """Invariant 3, the race itself. perdure cannot produce it (a new execution's first
    turn runs only after the commit that created it), so the test delivers the completion
    the way the other engine's queue did: ``ActivityCompleted`` for task 1 of execution 2
    arrives while the instance is still at execution 1. The lock that sees it defers it
    (delivery count 1, visible later), deletes nothing and records no discard; once
    execution 2 exists and has scheduled task 1, the early result is applied and the
    orchestration completes with it. No activity ran at all.

    Verified: treating a message for a later execution like one for an earlier execution
    (``future`` sorted into ``stale`` in ``_lock_instance``) makes the lock discard it; the
    test then fails on ``delivery_count`` (the message is gone) and, further on, the
    orchestration is left Running, waiting on task 1.
    """
    store, client = clocked_store, clocked_client
    worker = StepWorker(app, store, "w1")
    iid = client.start(renewing, {"round": 0}, instance_id="renewing")
    assert worker.turns() == 1  # execution 1 now waits for "go"

    early = ActivityCompleted(task_id=1, result="early", timestamp=clock())
    store.enqueue_messages([Message(iid, early, execution_id=2)])
    client.raise_event(iid, "go")
    assert worker.turns() == 1  # the turn that continues as new

    [deferred] = [m for m in store.pending_messages(iid) if isinstance(m.event, ActivityCompleted)]
    assert deferred.execution_id == 2 and deferred.delivery_count == 1
    assert deferred.visible_at > clock()
    assert store.discarded_messages(instance_id=iid) == []
    assert store.dead_letters(instance_id=iid) == []

    # Orchestration turns only: execution 2 starts, schedules task 1, and gets the early result.
    for _ in range(10):
        if not worker.turns():
            clock.advance(1.0)
    state = client.get(iid)
    assert (state.status, state.output, state.execution_id) == ("COMPLETED", "early", 2)
    assert [e.result for e in of_type(events(store, iid, 2), ActivityCompleted)] == ["early"]
    assert isinstance(events(store, iid, 1)[-1], ContinuedAsNew)  # nothing was deleted
    assert worker.stats().get("activities", 0) == 0


def test_an_event_for_an_instance_that_does_not_exist_yet_waits_for_it(clocked_store, clocked_client, clock: FakeClock):
    """Invariant 3 for a missing instance: an event enqueued before its instance exists is
    deferred (not deleted) by every lock that sees it, and delivered once the instance is
    created.

    Verified: deleting instead of deferring (``_defer`` for ``INSTANCE_NOT_FOUND`` replaced
    by a plain delete in ``_lock_instance``) fails the ``delivery_count`` assertion, and the
    greeter would then wait forever.
    """
    store, client = clocked_store, clocked_client
    worker = StepWorker(app, store, "w1")
    store.enqueue_messages([Message("later", EventRaised(name="hello", input="hi", timestamp=clock()))])
    for _ in range(3):
        assert worker.turns() == 0
        clock.advance(60.0)
    [waiting] = store.pending_messages("later")
    assert waiting.delivery_count == 3 and store.dead_letters(instance_id="later") == []

    client.start(greeter, None, instance_id="later")
    drain(worker, clock, until=["later"])
    state = client.get("later", history=True)
    assert (state.status, state.output) == ("COMPLETED", "hi")
    assert [e.input for e in of_type(state.history, EventRaised)] == ["hi"]


def test_an_undeliverable_message_is_dead_lettered_after_bounded_tries(store_url):
    """Invariant 3, the bound: after ``max_deliveries`` tries a message whose instance never
    appears moves to the dead letters (reason ``instance_not_found``), where diagnosis and
    the operator see it; it is never silently dropped.

    Verified: with ``_defer`` deleting instead of dead-lettering, ``dead_letters`` is empty
    and the test fails.
    """
    clock = FakeClock()
    store = perdure.open_store(store_url, clock=clock, max_deliveries=3)
    try:
        worker = StepWorker(app, store, "w1")
        event = EventRaised(name="hello", input=1, timestamp=clock())
        store.enqueue_messages([Message("ghost", event, execution_id=1)])
        for _ in range(3):
            worker.turns()
            clock.advance(60.0)
        [dead] = store.dead_letters(instance_id="ghost")
        assert dead.reason == DeadLetterReason.INSTANCE_NOT_FOUND and dead.delivery_count == 3
        assert dead.event == event
        assert store.pending_messages("ghost") == [] and store.queue_stats().dead_letters == 1
    finally:
        store.close()
