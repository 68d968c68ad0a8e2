"""Conformance: ``run_round``, a worker's round: the claim, the turns run with no
transaction open, the finish."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from perdure.core.history import DiscardReason, EventRaised, TurnStarted
from perdure.store.base import (
    Message,
    OrchestrationWorkItem,
    Outcome,
    RoundRequest,
    RoundResult,
    Store,
    TurnCommit,
)
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    commit,
    done,
    kinds,
    lock,
    lock_one,
    raise_event,
    running,
    start,
    task,
    turn,
)
from perdure.testing.faults import FailAt, FakeClock, InjectedFault

Turns = Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]]


def round_(store: Store, run_turns: Turns | None = None, **kw: Any) -> RoundResult:
    """One round as worker ``w1`` (limits 10 unless told otherwise); ``run_turns`` defaults
    to a turn per item that applies its messages and schedules nothing."""
    kw.setdefault("orchestration_limit", 10)
    kw.setdefault("activity_limit", 10)
    request = RoundRequest(owner="w1", lease_seconds=LEASE, **kw)
    return store.run_round(request, run_turns or (lambda items: [turn(i) for i in items]))


def with_task(store: Store, iid: str = "i1") -> Any:
    """A running ``iid`` whose task 1 is locked by activity worker ``a1``."""
    start(store, iid)
    assert commit(store, lock_one(store, iid), activities=[task(iid)]) is Outcome.OK
    [work] = store.lock_activities("a1", lease_seconds=LEASE)
    return work


def test_a_round_records_outcomes_runs_the_turns_they_wake_and_takes_the_new_tasks(
    store: Store, clock: FakeClock
) -> None:
    work = with_task(store)
    seen: list[list[str]] = []

    def run_turns(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        seen.extend(kinds(m.event for m in i.messages) for i in items)
        return [turn(i, activities=[task("i1", 2, "next")]) for i in items]

    result = round_(store, run_turns, completions=[done(work, "r1")])
    assert result.completions == [Outcome.OK] and result.turns == [Outcome.OK]
    assert seen == [["ActivityCompleted"]]  # the lock saw the completion just recorded
    [claimed] = result.activities
    assert (claimed.task_id, claimed.name, claimed.lease_owner) == (2, "next", "w1")
    [row] = store.activity_tasks("i1")
    assert row.lease_token == claimed.lease_token and row.locked_at == clock()
    assert kinds(store.get_history("i1"))[-2:] == ["TurnStarted", "ActivityCompleted"]
    assert store.pending_messages("i1") == []


def test_a_round_with_nothing_due_calls_no_turns(store: Store) -> None:
    work = with_task(store)

    def fail(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        raise AssertionError("run_turns called without work")

    result = round_(store, fail, completions=[done(work)], orchestration_limit=0, activity_limit=0)
    assert (result.completions, result.locked, result.turns, result.activities) == ([Outcome.OK], [], [], [])
    assert kinds(store.pending_messages("i1")) == ["ActivityCompleted"]
    assert round_(store, fail, orchestration_limit=0).activities == []


def test_a_round_is_fenced_like_its_parts(store: Store) -> None:
    work = with_task(store)
    stale = done(work)
    store.abandon_activity(work.task_row_id, work.lease_token)
    [retaken] = store.lock_activities("a2", lease_seconds=LEASE)
    start(store, "i2")

    def forged(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        return [replace(turn(i), lease_token="not-the-token") for i in items]

    result = round_(store, forged, completions=[stale], activity_limit=0)
    assert result.completions == [Outcome.LEASE_LOST]
    assert [i.instance.instance_id for i in result.locked] == ["i2"] and result.turns == [Outcome.LEASE_LOST]
    assert store.get_history("i2") == [] and store.activity_tasks("i1")[0].lease_token == retaken.lease_token


def test_a_round_that_takes_over_an_expired_lease_fences_its_old_holder_out(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    stale = lock_one(store, "i1", owner="w0")
    clock.advance(LEASE + 1)
    result = round_(store)
    assert [i.instance.instance_id for i in result.locked] == ["i1"] and result.turns == [Outcome.OK]
    # The old holder's token no longer holds, although the round's own turn released its lease
    # (a turn consuming nothing: only the lease fences it).
    assert commit(store, stale, new_events=[TurnStarted(timestamp=3.0)], consumed=[]) is Outcome.LEASE_LOST
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]


def test_a_round_turn_that_keeps_its_lease_holds_it_after_the_round(store: Store) -> None:
    start(store, "i1")
    result = round_(store, lambda items: [turn(i, release=False) for i in items])
    [item] = result.locked
    assert result.turns == [Outcome.OK]
    raise_event(store, "i1")
    assert lock(store, "w2") == []  # still leased to the round's owner
    assert store.commit_turns([turn(item, new_events=[], consumed=[])]) == [Outcome.OK]
    assert lock(store, "w2") != []  # released by that commit


def test_a_round_keeps_the_leases_of_instances_it_locked_but_did_not_commit(store: Store) -> None:
    start(store, "i1")
    work = with_task(store, "i2")
    result = round_(
        store, lambda items: [turn(i) for i in items if i.instance.instance_id == "i1"], completions=[done(work)]
    )
    assert sorted(i.instance.instance_id for i in result.locked) == ["i1", "i2"] and result.turns == [Outcome.OK]
    assert lock(store, "w2") == []  # i2 stays leased until its lease expires, as if locked alone
    assert kinds(store.pending_messages("i2")) == ["ActivityCompleted"]  # its completion is kept
    [i2] = [i for i in result.locked if i.instance.instance_id == "i2"]
    assert commit(store, i2, consumed=[]) is Outcome.OK


def test_a_round_hands_a_completion_to_the_turn_as_its_replay_will_read_it(store: Store) -> None:
    work = with_task(store)
    seen: list[Any] = []

    def run_turns(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        seen.extend(m.event.result for i in items for m in i.messages)
        return [turn(i) for i in items]

    assert round_(store, run_turns, completions=[done(work, (1, {"a": (2,)}))]).turns == [Outcome.OK]
    assert seen == [[1, {"a": [2]}]]  # JSON's reading of the tuple, as in the stored history
    assert store.get_history("i1")[-1].event.result == [1, {"a": [2]}]


def test_a_round_queues_the_completions_it_does_not_deliver(store: Store) -> None:
    """Each completion the round records reaches the queue unless a turn of the same round
    applies it: the instance is leased by another worker, runs an orchestration this worker
    does not, is past the round's limit, or its turn leaves the completion unconsumed."""
    works = {}
    for iid, name in [("leased", "wf"), ("foreign", "other"), ("late", "wf"), ("left", "wf"), ("taken", "wf")]:
        start(store, iid, name=name)
        assert commit(store, lock_one(store, iid), activities=[task(iid)]) is Outcome.OK
        works[iid] = next(w for w in store.lock_activities("a1", lease_seconds=LEASE) if w.instance_id == iid)
    raise_event(store, "leased")
    held = lock_one(store, "leased", owner="w2")

    def run_turns(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        return [turn(i, consumed=[]) if i.instance.instance_id == "left" else turn(i) for i in items]

    result = round_(
        store,
        run_turns,
        completions=[done(works[i]) for i in ("leased", "foreign", "left", "taken", "late")],
        orchestration_names=["wf"],
        orchestration_limit=2,
    )
    assert result.completions == [Outcome.OK] * 5
    assert sorted(i.instance.instance_id for i in result.locked) == ["left", "taken"]
    assert result.turns == [Outcome.OK, Outcome.OK]
    for iid in ("leased", "foreign", "late", "left"):
        assert kinds(store.pending_messages(iid))[-1:] == ["ActivityCompleted"], iid
    assert store.pending_messages("taken") == [] and kinds(store.get_history("taken"))[-1] == "ActivityCompleted"
    assert commit(store, held) is Outcome.OK  # the other worker's turn, on the event alone
    [again] = lock(store, "w2", instance_ids=["leased"])
    assert kinds(m.event for m in again.messages) == ["ActivityCompleted"]


def test_a_round_records_a_completion_its_turn_discards(store: Store) -> None:
    work = with_task(store)

    def run_turns(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        [item] = items
        [message] = item.messages
        return [turn(item, new_events=[], consumed=[], discarded=[(message.message_id, "duplicate", "seen")])]

    assert round_(store, run_turns, completions=[done(work, "late")]).turns == [Outcome.OK]
    [record] = store.discarded_messages(instance_id="i1")
    assert (record.reason, record.detail, record.event.result) == ("duplicate", "seen", "late")
    assert store.pending_messages("i1") == []


def test_a_round_records_a_late_outcome_for_a_terminal_instance_as_discarded(store: Store) -> None:
    work = with_task(store)
    raise_event(store, "i1")
    assert commit(store, lock_one(store, "i1"), status=COMPLETED) is Outcome.OK
    result = round_(store, completions=[done(work)])
    assert result.completions == [Outcome.DISCARDED] and result.locked == []
    [record] = store.discarded_messages(instance_id="i1")
    assert record.reason == DiscardReason.TERMINAL_INSTANCE


def test_a_round_whose_finish_fails_writes_no_turn_and_releases_its_leases(store: Store) -> None:
    work = with_task(store)
    start(store, "i2")
    store.fault_hook = FailAt("run_round:inside")
    with pytest.raises(InjectedFault):
        round_(
            store,
            lambda items: [turn(i, activities=[task(i.instance.instance_id, 5)]) for i in items],
            completions=[done(work)],
        )
    store.fault_hook = None
    # The claim stands (the completion is queued); nothing of the turns, their new tasks
    # and their locks; the leases of the claim were released.
    assert store.activity_tasks("i1") == [] and kinds(store.pending_messages("i1")) == ["ActivityCompleted"]
    assert store.get_history("i2") == [] and store.activity_tasks("i2") == []
    assert kinds(store.pending_messages("i2")) == ["ExecutionStarted"]
    assert {i.instance.instance_id for i in lock(store, "w2")} == {"i1", "i2"}


def test_a_round_whose_code_raises_writes_no_turn_and_releases_its_leases(store: Store) -> None:
    def broken(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        raise RuntimeError("the orchestration code blew up")

    start(store, "i3")
    with pytest.raises(RuntimeError):
        round_(store, broken)
    assert store.get_history("i3") == [] and lock_one(store, "i3").lease_token


def test_a_round_runs_its_turns_with_no_transaction_open(store: Store) -> None:
    """Invariant 10: the orchestration code runs between the round's transactions, so the
    store can be written meanwhile (on SQLite a transaction would hold the write lock)."""
    running(store, "i1")
    raise_event(store, "i1")

    def writes_meanwhile(items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        store.enqueue_messages([Message("i1", EventRaised(timestamp=1.0, name="meanwhile"))])
        return [turn(i) for i in items]

    assert round_(store, writes_meanwhile).turns == [Outcome.OK]
    [pending] = store.pending_messages("i1")  # taken by the next turn, in order
    assert pending.event.name == "meanwhile"


def test_a_round_says_when_work_is_due_and_wakes_nobody_for_work_it_took(store: Store, clock: FakeClock) -> None:
    work = with_task(store)
    topics = (ORCHESTRATIONS, ACTIVITIES)
    before = store.notifier.snapshot(topics)
    result = round_(
        store,
        lambda items: [turn(i, activities=[task("i1", 2), task("i1", 3, visible_at=clock() + 5)]) for i in items],
        completions=[done(work)],
    )
    assert [t.task_id for t in result.activities] == [2]
    assert result.next_message_at is None and result.next_task_at == clock() + 5
    assert store.notifier.snapshot(topics) == before  # all it created, it took
    start(store, "other", name="not-mine")
    result = round_(store, orchestration_names=["wf"])
    assert result.locked == [] and result.next_message_at == clock()
    before = store.notifier.snapshot(topics)
    result = round_(
        store,
        lambda items: [turn(i, activities=[task(i.instance.instance_id, 9, "f")]) for i in items],
        activity_limit=0,
    )
    assert [i.instance.instance_id for i in result.locked] == ["other"]
    moved = {t for t in topics if store.notifier.snapshot(topics)[t] != before[t]}
    assert moved == {ACTIVITIES}  # a due task nobody took: wake the activity takers
