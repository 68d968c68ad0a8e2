"""PostgreSQL: exclusivity of instance leases across processes and connections.

Several worker processes, each with its own store object and connection pool, race for the
same instances. With leases far longer than the test, no lease can expire, so every lock
must be exclusive: no two processes ever hold one instance at once, every turn commits, and
every message is applied exactly once.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import perdure
from perdure.core.history import EventRaised, ExecutionStarted, TurnStarted
from perdure.core.status import OrchestrationStatus
from perdure.store.base import Message, NewActivityTask, NewInstance, Outcome, TurnCommit
from perdure.store.postgres import PostgresStore
from perdure.testing.conformance.helpers import running, turn
from perdure.testing.faults import FakeClock
from tests import pgserver

INSTANCES = 24
TURNS = 4  # turns per instance: each turn sends the instance its next event


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database."""
    with pgserver.fresh_database() as url:
        yield url


def race(url: str, owner: str, results: Any, start: Any) -> None:
    """One worker process: lock, hold briefly, commit a turn that enqueues the instance's next
    event, until no work is left. Reports ``(instance, locked_after, committing_before,
    outcome)`` for every turn: the interval between the two times lies inside the real hold.
    All processes begin together (``start``, a barrier), however long each took to start."""
    store = PostgresStore(url, notify=False, pool_size=2)
    turns: list[tuple[str, float, float, str]] = []
    try:
        start.wait(60)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            items = store.lock_orchestrations(owner, lease_seconds=600, limit=3)
            if not items:
                time.sleep(0.01)
                continue
            idle_since = time.monotonic()
            locked = time.time()
            time.sleep(0.003)  # hold the lease a little, as a real turn would
            commits = []
            for item in items:
                iid = item.instance.instance_id
                done = sum(isinstance(e, EventRaised) for e in item.history) + sum(
                    isinstance(m.event, EventRaised) for m in item.messages
                )
                more = done < TURNS
                commits.append(
                    TurnCommit(
                        instance_id=iid,
                        lease_token=item.lease_token,
                        execution_id=item.instance.execution_id,
                        new_events=[
                            TurnStarted(timestamp=locked),
                            *(m.event for m in item.messages),
                        ],
                        consumed=[m.message_id for m in item.messages],
                        status=OrchestrationStatus.RUNNING if more else OrchestrationStatus.COMPLETED,
                        messages=[Message(iid, EventRaised(name=f"e{done + 1}"), 1)] if more else [],
                    )
                )
            committing = time.time()
            outcomes = store.commit_turns(commits)
            turns.extend((c.instance_id, locked, committing, o.value) for c, o in zip(commits, outcomes, strict=True))
    finally:
        store.close()
        results.put((owner, turns))


def test_processes_racing_for_instances_never_both_hold_one(pg_url: str) -> None:
    store = PostgresStore(pg_url, notify=False)
    try:
        for n in range(INSTANCES):
            store.create_instance(NewInstance(f"i{n}", "wf", None))
            store.enqueue_messages([Message(f"i{n}", EventRaised(name="e1"), 1)])
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        start = ctx.Barrier(3)
        procs = [ctx.Process(target=race, args=(pg_url, f"p{n}", results, start)) for n in range(3)]
        for p in procs:
            p.start()
        reports = dict(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(10)
            assert p.exitcode == 0

        held: dict[str, list[tuple[float, float, str]]] = {}
        for owner, turns in reports.items():
            assert all(outcome == Outcome.OK.value for *_, outcome in turns), "a lease was lost"
            for iid, locked, committing, _ in turns:
                held.setdefault(iid, []).append((locked, committing, owner))
        for iid, spans in held.items():
            spans.sort()
            for (_, end, owner), (start, _, other) in itertools.pairwise(spans):
                assert start >= end or owner == other, f"{iid} held by {owner} and {other} at once"

        for n in range(INSTANCES):
            rec = store.get_instance(f"i{n}")
            assert rec is not None and rec.status == OrchestrationStatus.COMPLETED
            events = [r.event for r in store.get_history(f"i{n}")]
            assert sum(isinstance(e, ExecutionStarted) for e in events) == 1
            names = [e.name for e in events if isinstance(e, EventRaised)]
            assert names == [f"e{k}" for k in range(1, TURNS + 1)]  # each applied exactly once
        assert sum(len(turns) for turns in reports.values()) >= INSTANCES * TURNS // 2
        assert len([o for o, turns in reports.items() if turns]) >= 2, "no actual race happened"
    finally:
        store.close()


def test_activity_tasks_are_claimed_by_one_connection_each(pg_url: str) -> None:
    """Many store objects (separate pools) claiming tasks at once never share one."""
    stores = [PostgresStore(pg_url, notify=False, pool_size=2) for _ in range(4)]
    try:
        running(stores[0], "i1")
        stores[0].enqueue_messages([Message("i1", EventRaised(name="go"), 1)])
        [work] = stores[0].lock_orchestrations("w", lease_seconds=60)
        tasks = [NewActivityTask("i1", 1, n, "act", n) for n in range(60)]
        turn = TurnCommit(
            instance_id="i1",
            lease_token=work.lease_token,
            execution_id=1,
            new_events=[TurnStarted(), *(m.event for m in work.messages)],
            consumed=[m.message_id for m in work.messages],
            status=OrchestrationStatus.RUNNING,
            activities=tasks,
        )
        assert stores[0].commit_turns([turn]) == [Outcome.OK]

        claimed: list[list[int]] = [[] for _ in stores]
        barrier = threading.Barrier(len(stores))

        def claim(n: int) -> None:
            barrier.wait()
            while got := stores[n].lock_activities(f"a{n}", lease_seconds=60, limit=4):
                claimed[n].extend(t.task_id for t in got)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        every = [task_id for ids in claimed for task_id in ids]
        assert sorted(every) == list(range(60))  # each task claimed exactly once
    finally:
        for s in stores:
            s.close()


def race_commit_and_takeover(a: PostgresStore, b: PostgresStore, held: Any) -> tuple[list[Outcome], list[Any]]:
    """Run A's commit of ``held`` and B's lock of the same instance at the same moment."""
    barrier = threading.Barrier(2)
    outcome: list[Outcome] = []
    taken: list[Any] = []

    def commit_late() -> None:
        barrier.wait()
        outcome.extend(a.commit_turns([turn(held)]))

    def take_over() -> None:
        barrier.wait()
        taken.extend(b.lock_orchestrations("B", lease_seconds=10, instance_ids=["i1"]))

    threads = [threading.Thread(target=commit_late), threading.Thread(target=take_over)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcome, taken


def test_a_late_commit_racing_a_takeover_never_lets_both_apply_a_message(pg_url: str) -> None:
    """Holder A's lease has expired; A commits while B takes the instance over. Whatever the
    interleaving, A's commit and B's lock never both get the same message."""
    clock = FakeClock()
    a, b = (PostgresStore(pg_url, clock=clock, notify=False) for _ in range(2))
    try:
        running(a, "i1")
        for n in range(15):
            a.enqueue_messages([Message("i1", EventRaised(name=f"e{n}"), 1)])
            [held] = a.lock_orchestrations("A", lease_seconds=10, instance_ids=["i1"])
            clock.advance(11)
            outcome, taken = race_commit_and_takeover(a, b, held)
            mine = {m.message_id for m in held.messages}
            theirs = {m.message_id for item in taken for m in item.messages}
            if outcome == [Outcome.OK]:
                assert not mine & theirs, f"round {n}: a message applied by A went to B too"
            else:
                assert outcome == [Outcome.LEASE_LOST] and mine <= theirs
            for item in taken:  # B finishes its turn; the next round starts clean
                assert b.commit_turns([turn(item)]) == [Outcome.OK]
        names = [r.event.name for r in a.get_history("i1") if isinstance(r.event, EventRaised)]
        assert names == [f"e{n}" for n in range(15)]
    finally:
        a.close()
        b.close()


def test_an_instance_whose_holder_is_writing_under_its_lease_is_passed_over_not_waited_for(pg_url: str) -> None:
    """Holder A's lease has expired while A is renewing or committing under it: A's
    transaction holds the lease row (not the instance row). B's lock passes the instance
    over at once instead of waiting for A, and takes it over once A's transaction is done."""
    clock = FakeClock()
    store = PostgresStore(pg_url, clock=clock, notify=False)
    try:
        running(store, "i1")
        store.enqueue_messages([Message("i1", EventRaised(name="e"), 1)])
        [held] = store.lock_orchestrations("A", lease_seconds=10, instance_ids=["i1"])
        clock.advance(11)
        taken: list[Any] = []
        with psycopg.connect(pg_url, autocommit=True) as a, a.transaction():
            a.execute("SELECT 1 FROM orchestration_leases WHERE instance_id = 'i1' FOR UPDATE")
            lock = threading.Thread(target=lambda: taken.append(store.lock_orchestrations("B", lease_seconds=10)))
            lock.start()
            lock.join(5)
            waited = lock.is_alive()
        lock.join()
        assert not waited and taken == [[]]
        [item] = store.lock_orchestrations("B", lease_seconds=10)
        assert [m.message_id for m in item.messages] == [m.message_id for m in held.messages]
    finally:
        store.close()


lock_probe = perdure.App()
probe_url: list[str] = []


@lock_probe.activity(local=True)
def lock_own_row(instance_id: str) -> list[str]:
    """Lock the instance's row from another session, NOWAIT: it fails if a transaction of
    the worker holds it."""
    with psycopg.connect(probe_url[0], autocommit=True) as other, other.transaction():
        row = other.execute("SELECT instance_id FROM instances WHERE instance_id = %s FOR UPDATE NOWAIT", [instance_id])
        lease = other.execute("SELECT owner FROM orchestration_leases WHERE instance_id = %s", [instance_id])
        return [row.fetchone()[0], lease.fetchone()[0]]


@lock_probe.orchestration
async def probes(ctx: perdure.OrchestrationContext, _: None) -> list[str]:
    return await ctx.call_activity(lock_own_row, ctx.instance_id)


def test_no_row_is_locked_while_orchestration_code_runs(pg_url: str) -> None:
    """Invariant 10 on PostgreSQL: while a turn's code runs (here a local activity, inside
    the turn), the worker holds no transaction, so no row lock either: another session
    locks the instance's row at once (``NOWAIT``). The instance is leased (its lease row),
    which is what keeps other workers away.

    Pinned: when a round ran its turns inside its transaction, the row was locked and the
    probe failed with "could not obtain lock on row" (checked against the earlier code)."""
    probe_url[:] = [pg_url]
    store = PostgresStore(pg_url)
    try:
        client = perdure.Client(store)
        # Queued starts: a start run by the idle worker would run the turn before the row exists.
        with perdure.Worker(lock_probe, store, poll_interval=0.05, worker_id="w-probe", run_local_starts=False):
            state = client.wait(client.start(probes, None, instance_id="p1"), timeout=20)
        assert (state.status, state.output) == ("COMPLETED", ["p1", "w-probe"])
    finally:
        store.close()
