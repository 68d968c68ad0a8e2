"""Conformance: ``run_round``, a worker's round in one transaction: commit the turns the
worker ran (with outcomes handed over to turns of instances it holds), record the other
activity outcomes, lock the instances and tasks that come next."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from perdure.core.history import (
    DiscardReason,
    ExecutionCompleted,
    ParentRef,
    SubOrchestrationCompleted,
    TurnStarted,
    dumps_event,
    loads_event,
)
from perdure.store.base import (
    ActivityCompletion,
    LockedInstance,
    OrchestrationWorkItem,
    Outcome,
    QueuedMessage,
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
    start,
    task,
    turn,
)
from perdure.testing.faults import FailAt, FakeClock, InjectedFault


def round_(store: Store, **kw: Any) -> RoundResult:
    """One round as worker ``w1`` (limits 10 unless told otherwise)."""
    kw.setdefault("orchestration_limit", 10)
    kw.setdefault("activity_limit", 10)
    return store.run_round(RoundRequest(owner="w1", lease_seconds=LEASE, **kw))


def with_task(store: Store, iid: str = "i1", owner: str = "a1", *, keep: bool = False) -> Any:
    """A running ``iid`` whose task 1 is locked by activity worker ``owner``; with ``keep``,
    the turn that scheduled it kept its lease: ``(task, lease token)``."""
    start(store, iid)
    item = lock_one(store, iid)
    assert commit(store, item, activities=[task(iid)], release=not keep) is Outcome.OK
    [work] = store.lock_activities(owner, lease_seconds=LEASE)
    return (work, item.lease_token) if keep else work


def handed(work: Any, result: Any = "ok") -> ActivityCompletion:
    """The outcome of a locked task, as a worker that holds its instance hands it over."""
    completion = done(work, result)
    return replace(
        completion,
        event_json=dumps_event(completion.event),
        instance_id=work.instance_id,
        run_id=work.run_id,
        execution_id=work.execution_id,
    )


def handed_turn(store: Store, iid: str, token: str, outcomes: list[ActivityCompletion]) -> TurnCommit:
    """A turn of held instance ``iid`` (lease ``token``) applying ``outcomes`` handed over."""
    record = store.get_instance(iid)
    assert record is not None
    messages = tuple(
        QueuedMessage(-2 - n, iid, c.execution_id, loads_event(c.event_json), 1.0, 1.0, 1, c.event_json, c.run_id)  # type: ignore[arg-type]
        for n, c in enumerate(outcomes)
    )
    item = OrchestrationWorkItem(
        instance=_locked(record), lease_token=token, lease_expires_at=0.0, messages=messages, history=(),
        history_from=record.history_event_count, handed_over=tuple(outcomes),
    )  # fmt: skip
    return turn(item, handed_over=tuple(outcomes))


def _locked(record: Any) -> LockedInstance:
    return LockedInstance(
        record.instance_id,
        record.name,
        record.status,
        record.execution_id,
        record.history_event_count,
        record.parent,
        record.custom_status,
        record.run_id,
    )


def test_a_round_commits_turns_records_outcomes_and_locks_what_comes_next(store: Store, clock: FakeClock) -> None:
    work = with_task(store)
    result = round_(store, completions=[done(work, "r1")])
    assert result.completions == [Outcome.OK] and result.turns == []
    [item] = result.locked  # the instance the outcome woke, for the next round's turn
    assert kinds(m.event for m in item.messages) == ["ActivityCompleted"]
    result = round_(store, commits=[turn(item, activities=[task("i1", 2, "next")])])
    assert result.turns == [Outcome.OK] and result.locked == []
    [claimed] = result.activities  # the task the turn scheduled, in the same transaction
    assert (claimed.task_id, claimed.name, claimed.lease_owner) == (2, "next", "w1")
    [row] = store.activity_tasks("i1")
    assert row.lease_token == claimed.lease_token and row.locked_at == clock()
    assert kinds(store.get_history("i1"))[-2:] == ["TurnStarted", "ActivityCompleted"]
    assert store.pending_messages("i1") == []


def test_a_round_with_nothing_due_writes_nothing_but_its_outcomes(store: Store) -> None:
    work = with_task(store)
    result = round_(store, completions=[done(work)], orchestration_limit=0, activity_limit=0)
    assert (result.completions, result.locked, result.turns, result.activities) == ([Outcome.OK], [], [], [])
    assert kinds(store.pending_messages("i1")) == ["ActivityCompleted"]
    assert round_(store, orchestration_limit=0).activities == []


def test_a_round_hands_an_outcome_to_a_turn_of_an_instance_it_holds(store: Store) -> None:
    """The worker that holds the instance's lease hands the outcome straight to its next
    turn; that turn's commit records it: the task goes, no message is ever queued, and
    the history holds the outcome as its replay reads it."""
    work, token = with_task(store, owner="w1", keep=True)
    outcome = handed(work, (1, {"a": (2,)}))
    result = round_(store, commits=[handed_turn(store, "i1", token, [outcome])], completions=[outcome])
    assert result.turns == [Outcome.OK] and result.completions == [Outcome.OK]
    assert store.activity_tasks("i1") == [] and store.pending_messages("i1") == []
    assert store.discarded_messages(instance_id="i1") == []
    history = store.get_history("i1")
    assert kinds(history)[-2:] == ["TurnStarted", "ActivityCompleted"]
    assert history[-1].event.result == [1, {"a": [2]}]  # JSON's reading of the tuple


def test_a_handed_over_outcome_comes_after_what_was_queued_before_it(store: Store) -> None:
    """Invariant 10: an event was queued for the held instance before the outcome is
    recorded, so the turn that applied the outcome alone is refused; the outcome is queued
    behind the event, and the holder's next lock takes both, in that order."""
    work, token = with_task(store, owner="w1", keep=True)
    raise_event(store, "i1", "first")
    outcome = handed(work)
    result = round_(
        store, commits=[handed_turn(store, "i1", token, [outcome])], completions=[outcome], orchestration_limit=0
    )
    assert result.turns == [Outcome.LEASE_LOST] and result.completions == [Outcome.OK]
    assert kinds(store.pending_messages("i1")) == ["EventRaised", "ActivityCompleted"]
    assert lock(store, "w2") == []  # still held: the holder takes it again
    [item] = round_(store, held={"i1": token}).locked
    assert kinds(m.event for m in item.messages) == ["EventRaised", "ActivityCompleted"]


def test_a_handed_over_outcome_whose_task_was_taken_over_is_not_recorded(store: Store, clock: FakeClock) -> None:
    """The task's lease expired and another worker took it over: the stale outcome writes
    nothing, nor does the turn that applied it; the other run's outcome will stand."""
    work, token = with_task(store, owner="w1", keep=True)
    before = store.get_history("i1")
    clock.advance(LEASE + 1)
    [retaken] = store.lock_activities("a2", lease_seconds=LEASE)
    outcome = handed(work)
    result = round_(store, commits=[handed_turn(store, "i1", token, [outcome])], completions=[outcome])
    assert result.turns == [Outcome.LEASE_LOST] and result.completions == [Outcome.LEASE_LOST]
    assert store.activity_tasks("i1")[0].lease_token == retaken.lease_token
    assert store.get_history("i1") == before and store.pending_messages("i1") == []


def test_a_round_never_locks_the_callers_own_running_tasks(store: Store, clock: FakeClock) -> None:
    """The caller's renewals did not reach the store for longer than the lease (an
    outage): its round passes over the tasks it names as running, expired as they are, and
    takes the others; the running task keeps its token, so its result is accepted. Another
    worker may still take it over."""
    mine = with_task(store, "i1", owner="w1")
    other = with_task(store, "i2", owner="w0")
    clock.advance(LEASE + 1)
    [taken] = round_(store, running_tasks=[mine.task_row_id], orchestration_limit=0).activities
    assert taken.task_row_id == other.task_row_id
    [kept] = store.activity_tasks("i1")
    assert (kept.lease_token, kept.delivery_count) == (mine.lease_token, 1)
    result = round_(store, completions=[done(mine)], running_tasks=[mine.task_row_id], orchestration_limit=0)
    assert result.completions == [Outcome.OK] and store.activity_tasks("i1") == []
    assert kinds(store.pending_messages("i1")) == ["ActivityCompleted"]


def test_a_task_running_elsewhere_past_its_lease_is_taken_over_by_a_round(store: Store, clock: FakeClock) -> None:
    """``running_tasks`` names only the caller's own runs: an expired lease of another
    worker's run is taken over as before (at-least-once)."""
    stale = with_task(store, "i1", owner="w0")
    clock.advance(LEASE + 1)
    [taken] = round_(store, running_tasks=[stale.task_row_id + 1000], orchestration_limit=0).activities
    assert taken.task_row_id == stale.task_row_id and taken.lease_token != stale.lease_token
    assert round_(store, completions=[done(stale)], activity_limit=0).completions == [Outcome.LEASE_LOST]


def test_a_round_locks_the_instances_it_holds_when_they_have_messages(store: Store) -> None:
    start(store, "i1")
    item = lock_one(store, "i1")
    assert commit(store, item, release=False) is Outcome.OK
    raise_event(store, "i1")
    assert round_(store).locked == [] and lock(store, "w2") == []  # leased: not for anyone
    [again] = round_(store, held={"i1": item.lease_token}).locked  # but its holder's
    assert again.lease_token != item.lease_token and kinds(again.messages) == ["EventRaised"]


def test_a_round_is_fenced_like_its_parts(store: Store) -> None:
    work = with_task(store)
    stale = done(work)
    store.abandon_activity(work.task_row_id, work.lease_token)
    [retaken] = store.lock_activities("a2", lease_seconds=LEASE)
    start(store, "i2")
    [item] = round_(store, completions=[stale], activity_limit=0).locked
    assert item.instance.instance_id == "i2"
    forged = replace(turn(item), lease_token="not-the-token")
    result = round_(store, commits=[forged], completions=[stale], activity_limit=0)
    assert result.completions == [Outcome.LEASE_LOST] and result.turns == [Outcome.LEASE_LOST]
    assert store.get_history("i2") == [] and store.activity_tasks("i1")[0].lease_token == retaken.lease_token


def test_a_round_that_takes_over_an_expired_lease_fences_its_old_holder_out(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    stale = lock_one(store, "i1", owner="w0")
    clock.advance(LEASE + 1)
    [item] = round_(store).locked
    assert round_(store, commits=[turn(item)]).turns == [Outcome.OK]
    # The old holder's token no longer holds, although the new holder's turn released its
    # lease (a turn consuming nothing: only the lease fences it).
    assert commit(store, stale, new_events=[TurnStarted(timestamp=3.0)], consumed=[]) is Outcome.LEASE_LOST
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]


def test_a_round_records_a_completion_its_turn_discards(store: Store) -> None:
    work = with_task(store)
    [item] = round_(store, completions=[done(work, "late")]).locked
    [message] = item.messages
    discard = turn(item, new_events=[], consumed=[], discarded=[(message.message_id, "duplicate", "seen")])
    assert round_(store, commits=[discard]).turns == [Outcome.OK]
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


def test_a_round_that_takes_instances_tells_their_messages_due_once_their_leases_expire(
    store: Store, clock: FakeClock
) -> None:
    # The next due message is read after the round's locks: a message of an instance the
    # round took is due only when that lease expires, not at once.
    start(store, "i1")
    result = round_(store)
    assert [item.instance.instance_id for item in result.locked] == ["i1"]
    assert result.next_message_at == clock() + LEASE
    start(store, "i2")
    result = round_(store, commits=[turn(result.locked[0])])
    assert [item.instance.instance_id for item in result.locked] == ["i2"]
    assert result.next_message_at == clock() + LEASE


def test_a_round_tells_a_message_a_lease_holds_back_when_the_lease_expires_within_due_within(
    store: Store, clock: FakeClock
) -> None:
    start(store, "i1")
    assert [item.instance.instance_id for item in round_(store).locked] == ["i1"]
    raise_event(store, "i1")  # held back by the lease until it expires
    assert round_(store, orchestration_limit=0, due_within=LEASE).next_message_at == clock() + LEASE
    assert round_(store, due_within=LEASE).next_message_at == clock() + LEASE
    # Further than the caller looks ahead: left out.
    assert round_(store, orchestration_limit=0, due_within=LEASE / 2).next_message_at is None
    assert round_(store, due_within=LEASE / 2).next_message_at is None
    # A message no lease holds back is told however far ahead it is due.
    raise_event(store, "i2", visible_at=clock() + 10 * LEASE)
    assert round_(store, orchestration_limit=0, due_within=LEASE / 2).next_message_at == clock() + 10 * LEASE
    clock.advance(LEASE / 2)
    assert round_(store, orchestration_limit=0, due_within=LEASE / 2).next_message_at == clock() + LEASE / 2


def test_a_round_is_atomic(store: Store) -> None:
    work = with_task(store)
    start(store, "i2")
    [i2] = lock(store, "w1", instance_ids=["i2"])
    start(store, "i3")
    store.fault_hook = FailAt("run_round:inside")
    with pytest.raises(InjectedFault):
        round_(store, commits=[turn(i2, activities=[task("i2", 5)])], completions=[done(work)])
    store.fault_hook = None
    # Nothing of it stayed: the turn, its task, the outcome, the lock of i3, task locks.
    [row] = store.activity_tasks("i1")
    assert row.lease_token == work.lease_token and store.pending_messages("i1") == []
    assert store.get_history("i2") == [] and store.activity_tasks("i2") == []
    assert lock(store, "w2", instance_ids=["i3"])  # no lease was left behind


def test_a_round_says_when_work_is_due_and_wakes_nobody_for_work_it_took(store: Store, clock: FakeClock) -> None:
    work = with_task(store)
    topics = (ORCHESTRATIONS, ACTIVITIES)
    [item] = round_(store, completions=[done(work)]).locked
    before = store.notifier.snapshot(topics)
    result = round_(store, commits=[turn(item, activities=[task("i1", 2), task("i1", 3, visible_at=clock() + 5)])])
    assert [t.task_id for t in result.activities] == [2]
    assert result.next_message_at is None and result.next_task_at == clock() + 5
    assert store.notifier.snapshot(topics) == before  # all it created, it took
    start(store, "other", name="not-mine")
    result = round_(store, orchestration_names=["wf@*"])
    assert result.locked == [] and result.next_message_at == clock() and result.messages_seen_at == clock()
    before = store.notifier.snapshot(topics)
    [other] = round_(store).locked
    result = round_(store, commits=[turn(other, activities=[task("other", 9, "f")])], activity_limit=0)
    assert result.turns == [Outcome.OK]
    moved = {t for t in topics if store.notifier.snapshot(topics)[t] != before[t]}
    assert moved == {ACTIVITIES}  # a due task nobody took: wake the activity takers


def test_a_round_never_takes_an_instance_of_a_name_it_does_not_run(store: Store) -> None:
    """Issue 16, item 5: whatever brought its messages (its start, an activity outcome the
    same round recorded, an event), an instance of another name is never locked by the
    round: it waits for a worker that runs it."""
    work = with_task(store, "theirs")  # orchestration "wf", with a locked task
    start(store, "mine", name="mine")
    start(store, "other", name="other")
    raise_event(store, "other")
    result = round_(store, completions=[done(work)], orchestration_names=["mine@*", "wf@2"])
    assert [i.instance.instance_id for i in result.locked] == ["mine"]
    assert kinds(store.pending_messages("theirs")) == ["ActivityCompleted"]
    assert kinds(store.pending_messages("other")) == ["ExecutionStarted", "EventRaised"]
    assert {i.instance.instance_id for i in lock(store, "w2")} == {"theirs", "other"}  # free, unleased
    assert round_(store, orchestration_names=[]).locked == []  # an activity-only worker


def test_a_round_that_ends_an_instance_said_to_have_no_parent_still_reports_to_its_parent(store: Store) -> None:
    """``may_report=False`` lets a store write a turn that ends its instance without reading
    the row first; if the row names a parent all the same (the worker's copy of the
    instance was older than a reset of the parent, say), the parent still gets the report."""
    start(store, "child", parent=ParentRef("parent", 1, 7, "run-p"))
    item = lock_one(store, "child")
    end = [TurnStarted(timestamp=1.0), ExecutionCompleted(timestamp=1.0, result="r")]
    ending = turn(item, new_events=[*end[:1], *(m.event for m in item.messages), end[1]], status=COMPLETED)
    result = round_(store, commits=[replace(ending, output="r", may_report=False)], orchestration_limit=0)
    assert result.turns == [Outcome.OK]
    [report] = store.pending_messages("parent")
    assert isinstance(report.event, SubOrchestrationCompleted) and report.event.result == "r"
    assert (report.execution_id, report.run_id, report.event.task_id) == (1, "run-p", 7)


def test_a_round_that_ends_an_instance_said_to_have_no_parent_discards_its_queued_tasks(store: Store) -> None:
    """Ending an instance removes its queued tasks with a record however the turn is
    written (a turn written unread must not leave them, nor their records, out)."""
    start(store, "i1")
    item = lock_one(store, "i1")
    assert commit(store, item, activities=[task("i1", 1, "f"), task("i1", 2, "g")], release=False) is Outcome.OK
    [held] = store.lock_activities("a1", lease_seconds=LEASE, names=["f"])
    item = replace(item, messages=(), history_from=3)
    final = [TurnStarted(timestamp=1.0), ExecutionCompleted(timestamp=1.0, result=None)]
    ending = replace(turn(item, new_events=final, status=COMPLETED), may_report=False)
    assert round_(store, commits=[ending], orchestration_limit=0).turns == [Outcome.OK]
    assert store.get_instance("i1").status is COMPLETED  # type: ignore[union-attr]
    assert [t.task_row_id for t in store.activity_tasks("i1")] == [held.task_row_id]
    [record] = store.discarded_messages(instance_id="i1")
    assert record.reason == DiscardReason.TERMINAL_INSTANCE and record.event.name == "g"


def test_a_round_takes_the_tasks_its_turns_schedule_as_it_writes_them(store: Store, clock: FakeClock) -> None:
    """``take_scheduled``: due tasks of the worker's names, in the order scheduled, up to the
    limit, written locked for the worker; nobody is told of them. The others are queued
    and signalled. A task so taken is fenced as one locked by ``lock_activities``."""
    start(store, "i1")
    [item] = round_(store).locked
    before = store.notifier.snapshot((ACTIVITIES,))
    run = item.instance.run_id
    scheduled = [
        task("i1", 1, run_id=run), task("i1", 2, "other"), task("i1", 3, visible_at=clock() + 5), task("i1", 4),
        task("i1", 5),
    ]  # fmt: skip
    result = round_(
        store, commits=[turn(item, activities=scheduled)], orchestration_limit=0, activity_limit=0,
        take_scheduled=2, activity_names=["act"],
    )  # fmt: skip
    first, taken = result.activities
    assert (first.task_id, taken.task_id) == (1, 4)
    assert (first.lease_owner, first.lease_expires_at, first.delivery_count) == ("w1", clock() + LEASE, 1)
    assert (first.input, first.run_id, first.enqueued_at) == ({"n": 1}, run, clock())
    rows = {t.task_id: t for t in store.activity_tasks("i1")}
    assert rows[1].lease_token == first.lease_token and rows[1].locked_at == clock()
    assert rows[4].lease_token == taken.lease_token != first.lease_token
    assert [rows[n].lease_owner for n in (2, 3, 5)] == [None, None, None]
    assert store.notifier.snapshot((ACTIVITIES,)) != before  # tasks 2 and 5 wait for a taker
    assert sorted(t.task_id for t in store.lock_activities("w2", lease_seconds=LEASE, limit=10)) == [2, 5]
    # Fenced like any lock: its holder's outcome is recorded, a stale token's is refused.
    assert store.complete_activities([replace(done(first), lease_token="stale")]) == [Outcome.LEASE_LOST]
    assert store.complete_activities([done(first)]) == [Outcome.OK]


def test_a_round_that_takes_all_it_schedules_wakes_nobody_for_it(store: Store) -> None:
    start(store, "i1")
    [item] = round_(store).locked
    before = store.notifier.snapshot((ORCHESTRATIONS, ACTIVITIES))
    result = round_(
        store, commits=[turn(item, activities=[task("i1", 1), task("i1", 2)])], orchestration_limit=0,
        activity_limit=0, take_scheduled=10, due_times=False,
    )  # fmt: skip
    assert [t.task_id for t in result.activities] == [1, 2]
    assert store.notifier.snapshot((ORCHESTRATIONS, ACTIVITIES)) == before
    assert store.lock_activities("w2", lease_seconds=LEASE, limit=10) == []


def test_a_round_that_reads_no_due_times_signals_the_work_its_writes_queue(store: Store, clock: FakeClock) -> None:
    """``due_times=False``: no due times (None), and every queue the round's writes put work
    in is signalled, due now or not: its caller looks again when signalled."""
    start(store, "i1")
    [item] = round_(store).locked
    raise_event(store, "later", visible_at=clock() + 5)
    before = store.notifier.snapshot((ORCHESTRATIONS, ACTIVITIES))
    result = round_(
        store, commits=[turn(item, activities=[task("i1", 1, visible_at=clock() + 5)])], orchestration_limit=0,
        activity_limit=0, due_times=False,
    )  # fmt: skip
    assert (result.next_message_at, result.next_task_at, result.activities) == (None, None, [])
    after = store.notifier.snapshot((ORCHESTRATIONS, ACTIVITIES))
    assert after[ACTIVITIES] != before[ACTIVITIES] and after[ORCHESTRATIONS] == before[ORCHESTRATIONS]
