"""Conformance: ``create_and_run``, an eager start (a new instance and its first turn in
one transaction)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from perdure.core.history import ExecutionStarted
from perdure.core.turn import AwaitedEvent, WaitingOn
from perdure.errors import InstanceExistsError
from perdure.store.base import (
    NewInstance,
    OrchestrationWorkItem,
    Outcome,
    Store,
    TaskRequest,
    TurnCommit,
    TurnStats,
)
from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    RUNNING,
    commit,
    kinds,
    lock,
    lock_one,
    raise_event,
    start,
    task,
    turn,
)
from perdure.testing.faults import FailAt, FakeClock, InjectedFault


class Turns:
    """A ``run_turns`` callback that records what it was given and returns :func:`turn`
    of each item with ``kw``."""

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.seen: list[OrchestrationWorkItem] = []

    def __call__(self, items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        self.seen.extend(items)
        return [turn(i, **self.kw) for i in items]


def eager(store: Store, run_turns: Any, iid: str = "i1", **kw: Any) -> list[Outcome]:
    """``create_and_run`` of ``iid`` (workflow ``wf``) as worker ``w1``: its turn outcomes."""
    replace_terminal = kw.pop("replace_terminal", False)
    return store.create_and_run(
        NewInstance(iid, "wf", {"n": 1}, **kw),
        owner="w1",
        lease_seconds=LEASE,
        run_turns=run_turns,
        replace_terminal=replace_terminal,
    ).turns


def never(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
    raise AssertionError("run_turns must not be called")


def test_create_and_run_creates_the_instance_and_commits_its_first_turn(store: Store) -> None:
    topics = (INSTANCES, ACTIVITIES)
    before = store.notifier.snapshot(topics)
    turns = Turns(activities=[task("i1")])
    assert eager(store, turns) == [Outcome.OK]
    [item] = turns.seen
    assert item.instance.instance_id == "i1" and item.instance.name == "wf" and item.history_from == 0
    assert kinds(item.messages) == ["ExecutionStarted"] and item.messages[0].event.input == {"n": 1}
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]
    record = store.get_instance("i1")
    assert record is not None and record.status is RUNNING and record.input == {"n": 1}
    assert store.pending_messages("i1") == []
    [queued] = store.activity_tasks("i1")
    assert queued.task_id == 1 and queued.lease_owner is None
    # The activity takers were told; the instance's waiters were not: it has not ended.
    after = store.notifier.snapshot(topics)
    assert after[ACTIVITIES] != before[ACTIVITIES] and after[INSTANCES] == before[INSTANCES]
    # A first turn that ends its instance tells the waiters, in the same transaction.
    assert eager(store, Turns(status=COMPLETED, output="done"), iid="i2") == [Outcome.OK]
    assert store.notifier.version(INSTANCES) != after[INSTANCES]
    # The turn released its lease: a later message is anyone's.
    raise_event(store, "i1")
    assert [i.instance.instance_id for i in lock(store, "w2")] == ["i1"]


def test_create_and_run_hands_its_turn_the_input_as_its_json_gives_it(store: Store) -> None:
    """The first turn gets its ``ExecutionStarted`` decoded from its JSON, as a replay
    does (a tuple is a list, an integer key a string), and that JSON is the caller's
    (``input_json``) when given."""
    turns = Turns()
    eager(store, turns, iid="j1")
    store.create_and_run(
        NewInstance("j2", "wf", ("a", {7: 1}), input_json='["a",{"7":1}]'),
        owner="w1",
        lease_seconds=LEASE,
        run_turns=turns,
    )
    tupled = NewInstance("j3", "wf", ("a", {7: 1}))
    store.create_and_run(tupled, owner="w1", lease_seconds=LEASE, run_turns=turns)
    assert [item.messages[0].event.input for item in turns.seen] == [{"n": 1}, ["a", {"7": 1}], ["a", {"7": 1}]]
    assert [store.get_instance(i).input for i in ("j2", "j3")] == [["a", {"7": 1}]] * 2
    started = [getattr(r, "event", r) for i in ("j2", "j3") for r in store.get_history(i)]
    assert [e.input for e in started if isinstance(e, ExecutionStarted)] == [["a", {"7": 1}]] * 2


def test_create_and_run_can_finish_the_instance_in_one_commit(store: Store) -> None:
    assert eager(store, Turns(status=COMPLETED, output=7)) == [Outcome.OK]
    record = store.get_instance("i1")
    assert record is not None and record.status is COMPLETED and record.output == 7


def test_create_and_run_refuses_a_taken_id_before_running_anything(store: Store) -> None:
    start(store, "i1")
    with pytest.raises(InstanceExistsError, match="'i1'"):
        eager(store, never)
    with pytest.raises(InstanceExistsError, match="replace_terminal"):
        assert commit(store, lock_one(store, "i1"), status=COMPLETED) is Outcome.OK
        eager(store, never)
    # A terminal instance is replaced when asked: only the new run's history remains.
    assert eager(store, Turns(), replace_terminal=True) == [Outcome.OK]
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]
    assert store.get_instance("i1").status is RUNNING  # type: ignore[union-attr]


def test_create_and_run_is_atomic(store: Store) -> None:
    store.fault_hook = FailAt("create_and_run:inside")
    with pytest.raises(InjectedFault):
        eager(store, Turns(activities=[task("i1")]))
    store.fault_hook = None
    assert store.get_instance("i1") is None and store.pending_messages("i1") == []

    def broken(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        raise RuntimeError("the orchestration code blew up")

    with pytest.raises(RuntimeError):
        eager(store, broken)
    assert store.get_instance("i1") is None and store.activity_tasks("i1") == []
    assert eager(store, Turns()) == [Outcome.OK]  # the id is still free


def test_create_and_run_of_a_scheduled_start_only_creates_the_instance(store: Store, clock: FakeClock) -> None:
    before = store.notifier.snapshot((ORCHESTRATIONS,))
    assert eager(store, never, start_at=clock() + 10) == []
    assert store.notifier.snapshot((ORCHESTRATIONS,)) != before  # workers learn when it is due
    assert kinds(store.pending_messages("i1")) == ["ExecutionStarted"] and store.get_history("i1") == []
    assert lock(store) == []
    clock.advance(10)
    assert kinds(lock_one(store, "i1").messages) == ["ExecutionStarted"]


def test_create_and_run_leaves_what_was_queued_for_the_id_before_it_existed_to_the_next_turn(store: Store) -> None:
    raise_event(store, "i1", name="early")
    seen = store.notifier.version(ORCHESTRATIONS)
    turns = Turns(release=False)  # its worker keeps the lease (a turn waiting on its activity)
    assert eager(store, turns) == [Outcome.OK]
    assert store.notifier.version(ORCHESTRATIONS) != seen  # the workers are told of the message
    [item] = turns.seen  # run before the instance existed: the start alone
    assert kinds(item.messages) == ["ExecutionStarted"]
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]
    assert kinds(lock(store, "w1", held={"i1": item.lease_token})[0].messages) == ["EventRaised"]


def test_create_and_run_takes_the_tasks_its_turn_scheduled_when_asked(store: Store, clock: FakeClock) -> None:
    topics = (ACTIVITIES,)
    before = store.notifier.snapshot(topics)
    result = store.create_and_run(
        NewInstance("i1", "wf", None),
        owner="w1",
        lease_seconds=LEASE,
        run_turns=Turns(activities=[task("i1", 1), task("i1", 2, "other")]),
        tasks=TaskRequest(10, names={"act"}),
    )
    assert result.turns == [Outcome.OK]
    [taken] = result.activities  # not the name it does not run
    assert (taken.task_id, taken.name, taken.lease_expires_at) == (1, "act", clock() + LEASE)
    assert [t.lease_owner for t in store.activity_tasks("i1")] == ["w1", None]
    # Another task is due for the workers that run it: they are woken.
    assert store.notifier.snapshot(topics) != before
    assert [t.task_id for t in store.lock_activities("a2", lease_seconds=LEASE)] == [2]
    # Work it created and took itself wakes nobody.
    before = store.notifier.snapshot(topics)
    result = store.create_and_run(
        NewInstance("i2", "wf", None),
        owner="w1",
        lease_seconds=LEASE,
        run_turns=Turns(activities=[task("i2", 1)]),
        tasks=TaskRequest(10),
    )
    assert [t.instance_id for t in result.activities] == ["i2"]
    assert store.notifier.snapshot(topics) == before


def test_a_fresh_ids_first_turn_leaves_the_row_that_a_named_ids_does(store: Store) -> None:
    """A start of a fresh id leaves its row, history and tasks as a start of an id of the
    caller's does (PostgreSQL inserts a fresh id's row as its first turn leaves it, and
    writes none of it again): every payload, count and piece of the turn's evidence."""
    records = {}
    for iid, fresh in (("fresh", True), ("named", False)):
        run_turns = Turns(
            activities=[task(iid)],
            custom_status={"stage": 1},
            waiting_on=WaitingOn(events=(AwaitedEvent("approval", 5.0),)),
            stats=TurnStats(duration=0.25, full_replay=True, replayed_events=3),
            version=7,
            release=False,
        )
        result = store.create_and_run(
            NewInstance(iid, "wf", {"n": 1}, fresh_id=fresh),
            owner="w1",
            lease_seconds=LEASE,
            run_turns=run_turns,
            tasks=TaskRequest(10),
        )
        assert result.turns == [Outcome.OK]
        [taken] = result.activities
        assert taken.instance_id == iid and taken.input == {"n": 1}
        assert [(e.sequence, type(e.event).__name__) for e in store.get_history(iid)] == [
            (0, "TurnStarted"),
            (1, "ExecutionStarted"),
        ]
        record = store.get_instance(iid)
        assert record is not None
        records[fresh] = replace(record, instance_id="", run_id="", created_at=0.0, last_updated_at=0.0)
        # The turn kept its lease: the instance is held, its next message waits for it.
        raise_event(store, iid)
        assert lock(store, "w2") == []
    assert records[True] == records[False]
    assert records[True].status is RUNNING and records[True].custom_status == {"stage": 1}
    assert records[True].stats.turns == 1 and records[True].stats.last_turn_duration == 0.25


def test_a_fresh_id_is_not_looked_up_but_a_taken_one_is_still_refused(store: Store) -> None:
    """A start whose id was made at random (``fresh_id``) runs its first turn without
    reading the id first; should the id be taken all the same, the start raises and what
    was stored stays as it was."""
    assert eager(store, Turns(activities=[task()]), fresh_id=True) == [Outcome.OK]
    for create in (
        lambda: eager(store, Turns(status=COMPLETED), fresh_id=True),
        # A plain turn taking its task: on PostgreSQL its COMMIT is sent without reading the
        # insert first; the turn's own checks must then fail the transaction.
        lambda: store.create_and_run(
            NewInstance("i1", "wf", {"n": 1}, fresh_id=True),
            owner="w2",
            lease_seconds=LEASE,
            run_turns=Turns(activities=[task()]),
            tasks=TaskRequest(10),
        ),
        lambda: store.create_instances([NewInstance("i1", "wf", None, fresh_id=True)]),
    ):
        with pytest.raises(InstanceExistsError):
            create()
    record = store.get_instance("i1")
    assert record is not None and record.status is RUNNING and record.execution_id == 1
    [queued] = store.activity_tasks("i1")
    assert queued.lease_owner is None  # nobody took it
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]
