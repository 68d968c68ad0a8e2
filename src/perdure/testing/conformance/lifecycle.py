"""Conformance: creating instances, locking, committing turns, atomicity and fencing."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from perdure.core.history import (
    DiscardReason,
    EventRaised,
    ExecutionStarted,
    ExecutionTerminated,
    ParentRef,
    TimerFired,
)
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import AwaitedEvent, WaitingOn
from perdure.errors import InstanceExistsError, LeaseLost
from perdure.store.base import (
    ChildStart,
    Message,
    NewInstance,
    OrchestrationWorkItem,
    Outcome,
    Store,
    TurnStats,
)
from perdure.testing.conformance.helpers import (
    COMPLETED,
    LEASE,
    RUNNING,
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

# --- creating instances ------------------------------------------------------------------


def test_create_instance_is_pending_with_its_start_message(store: Store, clock: FakeClock) -> None:
    start(store, "i1", "wf", {"x": 1})
    rec = store.get_instance("i1")
    assert rec is not None
    assert (rec.status, rec.execution_id, rec.input, rec.name) == (
        OrchestrationStatus.PENDING,
        1,
        {"x": 1},
        "wf",
    )
    assert rec.created_at == clock() and rec.history_event_count == 0
    [msg] = store.pending_messages("i1")
    assert isinstance(msg.event, ExecutionStarted) and msg.event.input == {"x": 1}
    assert (msg.execution_id, msg.event.execution_id, msg.event.name) == (1, 1, "wf")


def test_create_instance_refuses_a_used_id_unless_replacing_a_terminal_one(store: Store) -> None:
    start(store, "i1")
    with pytest.raises(InstanceExistsError):
        start(store, "i1")
    with pytest.raises(InstanceExistsError):
        start(store, "i1", replace_terminal=True)  # not terminal: never replaced
    item = lock_one(store, "i1")
    assert commit(store, item, status=COMPLETED, output=7, activities=[task()]) is Outcome.OK
    raise_event(store, "i1")
    with pytest.raises(InstanceExistsError):
        start(store, "i1")
    store.create_instance(NewInstance("i1", "wf2", "again"), replace_terminal=True)
    rec = store.get_instance("i1")
    assert rec is not None and (rec.status, rec.name, rec.input, rec.output) == (
        "PENDING",
        "wf2",
        "again",
        None,
    )
    # A new run (invariant 9): its own token, its executions numbered after the old run's,
    # whose history stays readable; what was queued for the old run is discarded.
    assert rec.run_id != item.instance.run_id and rec.execution_id == 2
    assert store.get_history("i1") == [] and store.activity_tasks("i1") == []
    assert kinds(store.get_history("i1", execution_id=1))[:2] == ["TurnStarted", "ExecutionStarted"]
    [start_msg] = store.pending_messages("i1")
    assert isinstance(start_msg.event, ExecutionStarted)
    assert (start_msg.run_id, start_msg.execution_id, start_msg.event.run_id) == (rec.run_id, 2, rec.run_id)
    stale = [d for d in store.discarded_messages(instance_id="i1") if d.reason == DiscardReason.STALE_RUN]
    assert kinds(stale) == ["EventRaised"]


def test_create_instances_is_all_or_nothing(store: Store) -> None:
    store.create_instances([NewInstance("b1", "wf", 1), NewInstance("b2", "wf", 2)])
    assert [store.get_instance(i).input for i in ("b1", "b2")] == [1, 2]
    with pytest.raises(InstanceExistsError, match="b2"):
        store.create_instances([NewInstance("b3", "wf", 3), NewInstance("b2", "wf", 2)])
    assert store.get_instance("b3") is None
    assert {i.instance.instance_id for i in lock(store)} == {"b1", "b2"}


class Unencodable:
    """An input that JSON cannot hold: written only as the JSON its caller gave."""


def test_a_start_writes_the_input_json_its_caller_encoded_as_is(store: Store) -> None:
    """``NewInstance.input_json`` is the input's JSON, encoded already by the caller (the
    client, which checks its size): the instance row and the start message carry that
    text; the input itself is not encoded again (this one cannot be)."""
    text = '{"lines":["a","b"],"quantities":{"7":1}}'
    store.create_instances([NewInstance("j1", "wf", Unencodable(), input_json=text)])
    [start_msg] = store.pending_messages("j1")
    expected = {"lines": ["a", "b"], "quantities": {"7": 1}}
    assert store.get_instance("j1").input == expected and start_msg.event.input == expected


def test_scheduled_start_holds_early_messages_until_it_is_due(store: Store, clock: FakeClock) -> None:
    start(store, "i1", start_at=clock() + 100)
    raise_event(store, "i1")
    assert lock(store) == []
    assert [m.delivery_count for m in store.pending_messages("i1")] == [0, 0]  # held, no try used
    clock.advance(101)
    item = lock_one(store, "i1")
    assert kinds(item.messages) == ["ExecutionStarted", "EventRaised"]


# --- locking and committing --------------------------------------------------------------


def test_first_turn_commit_makes_the_instance_running_with_its_history(store: Store, clock: FakeClock) -> None:
    start(store, "i1", input=5)
    item = lock_one(store, "i1", owner="w1")
    assert item.instance.status == OrchestrationStatus.PENDING
    assert item.history == () and item.history_from == 0 and item.lease_token
    assert item.lease_expires_at == clock() + LEASE
    assert kinds(item.messages) == ["ExecutionStarted"] and item.messages[0].delivery_count == 1
    clock.advance(1)
    waiting = WaitingOn(events=(AwaitedEvent("Go", clock()),))
    outcome = commit(
        store,
        item,
        custom_status={"stage": 1},
        waiting_on=waiting,
        stats=TurnStats(duration=0.5, full_replay=True, replayed_events=3),
    )
    assert outcome is Outcome.OK
    rec = store.get_instance("i1")
    assert rec is not None and rec.status == RUNNING and rec.custom_status == {"stage": 1}
    assert rec.waiting_on == waiting and rec.last_updated_at == clock()
    assert rec.history_event_count == 2 and rec.history_bytes > 0
    assert (rec.stats.turns, rec.stats.full_replays, rec.stats.replayed_events) == (1, 1, 3)
    assert rec.stats.last_turn_duration == 0.5 and rec.stats.last_progress_at == clock()
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]
    assert store.pending_messages("i1") == []


def test_a_locked_instance_is_not_handed_out_again_until_its_lease_expires(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    first = lock_one(store, "i1", owner="w1")
    assert lock(store, "w2") == []
    assert lock(store, "w1") == []  # not even to its own owner
    clock.advance(LEASE + 1)
    second = lock_one(store, "i1", owner="w2")
    assert second.lease_token != first.lease_token
    assert second.messages[0].message_id == first.messages[0].message_id
    assert second.messages[0].delivery_count == 2  # duplicate delivery is visible


def test_threads_racing_for_one_instance_never_both_hold_it(store: Store) -> None:
    running(store, "i1")
    threads, rounds = 8, 12
    go, gone = (
        threading.Barrier(threads + 1, timeout=20),
        threading.Barrier(threads + 1, timeout=20),
    )
    won: list[list[OrchestrationWorkItem]] = [[] for _ in range(rounds)]

    def racer(n: int) -> None:
        for r in range(rounds):
            go.wait()
            try:
                won[r].extend(lock(store, f"w{n}", instance_ids=["i1"]))
            finally:
                gone.wait()

    workers = [threading.Thread(target=racer, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    try:
        for r in range(rounds):
            raise_event(store, "i1", f"E{r}")
            go.wait()
            gone.wait()
            assert len(won[r]) == 1, f"round {r}: {len(won[r])} simultaneous holders"
            assert commit(store, won[r][0]) is Outcome.OK
    except BaseException:
        go.abort()  # release the racers; aborting after a success could break their last wait
        gone.abort()
        raise
    finally:
        for w in workers:
            w.join(10)
    names = [e.event.name for e in store.get_history("i1") if isinstance(e.event, EventRaised)]
    assert names == [f"E{r}" for r in range(rounds)]


def test_messages_are_delivered_in_enqueue_order(store: Store) -> None:
    running(store, "i1")
    running(store, "i2")
    for n in range(5):
        raise_event(store, "i1", f"a{n}")
        raise_event(store, "i2", f"b{n}")
    items = {i.instance.instance_id: i for i in lock(store)}
    assert [m.event.name for m in items["i1"].messages] == [f"a{n}" for n in range(5)]
    assert [m.event.name for m in items["i2"].messages] == [f"b{n}" for n in range(5)]
    ids = [m.message_id for m in items["i1"].messages]
    assert ids == sorted(ids)


def test_operator_messages_keep_their_place_among_completions(store: Store) -> None:
    """Invariant 5: a message addressed to "whichever execution is current" (an operator's)
    is not sorted behind those addressed to the execution (completions): enqueue order."""
    running(store, "i1")
    raise_event(store, "i1", "operator first")  # execution_id None
    store.enqueue_messages([Message("i1", EventRaised(name="completion after"), execution_id=1)])
    store.enqueue_messages([Message("i1", ExecutionTerminated(reason="stop"))])
    [item] = lock(store)
    assert kinds(item.messages) == ["EventRaised", "EventRaised", "ExecutionTerminated"]
    assert [m.event.name for m in item.messages[:2]] == ["operator first", "completion after"]


def test_lock_takes_oldest_work_first_and_honours_limit_and_names(store: Store, clock: FakeClock) -> None:
    for n, name in enumerate(["a", "b", "a"]):
        start(store, f"i{n}", name)
        clock.advance(1)
    assert [i.instance.instance_id for i in lock(store, limit=1)] == ["i0"]
    assert [i.instance.instance_id for i in lock(store, names=["a@*"])] == ["i2"]
    assert [i.instance.instance_id for i in lock(store, names=["a@*", "b@*"])] == ["i1"]
    assert lock(store) == []


def test_lock_takes_only_the_versions_the_caller_runs(store: Store) -> None:
    """A running instance stays on its version: a worker takes it only if it runs that
    version; one whose version is still open (``name@*``) goes to any worker of the name,
    and the turn that takes it records the version it ran."""
    store.create_instance(NewInstance("v1", "a", None, version=1))
    store.create_instance(NewInstance("v2", "a", None, version=2))
    store.create_instance(NewInstance("open", "a", None))
    assert store.get_instance("v2").version == 2 and store.get_instance("open").version is None
    taken = {i.instance.instance_id: i for i in lock(store, "w1", names=["a@2"], limit=5)}
    assert set(taken) == {"v2"}
    assert taken["v2"].messages[0].event.version == 2
    taken = {i.instance.instance_id: i for i in lock(store, "w2", names=["a@3", "a@*"], limit=5)}
    assert set(taken) == {"open"}
    assert taken["open"].messages[0].event.version is None
    assert commit(store, taken["open"], version=3) is Outcome.OK
    assert store.get_instance("open").version == 3
    assert lock(store, "w3", names=["a@3", "a@*"], limit=5) == []  # v1 waits for a worker of version 1
    assert [i.instance.instance_id for i in lock(store, "w4", names=["a@1"], limit=5)] == ["v1"]


def test_timer_message_is_not_delivered_before_its_visible_at(store: Store, clock: FakeClock) -> None:
    running(store, "i1")
    fire_at = clock() + 60
    store.enqueue_messages([Message("i1", TimerFired(timestamp=1.0, task_id=1, fire_at=fire_at), 1, fire_at)])
    assert lock(store) == []
    assert store.next_visible_at() == fire_at
    clock.advance(59.5)
    assert lock(store) == []
    clock.advance(1)
    assert kinds(lock_one(store, "i1").messages) == ["TimerFired"]


def test_known_history_returns_only_the_missing_events(store: Store) -> None:
    running(store, "i1")
    raise_event(store, "i1", "A")
    assert commit(store, lock_one(store, "i1")) is Outcome.OK  # history: 4 events
    raise_event(store, "i1", "B")
    run = store.get_instance("i1").run_id  # type: ignore[union-attr]
    item = lock_one(store, "i1", known_history={"i1": (run, 1, 2)})
    assert item.history_from == 2 and kinds(item.history) == ["TurnStarted", "EventRaised"]
    store.abandon_orchestration("i1", item.lease_token)
    item = lock_one(store, "i1", known_history={"i1": (run, 1, 4)})
    assert item.history_from == 4 and item.history == ()
    store.abandon_orchestration("i1", item.lease_token)
    item = lock_one(store, "i1", known_history={"i1": (run, 7, 2)})  # another execution: everything
    assert item.history_from == 0 and len(item.history) == 4
    store.abandon_orchestration("i1", item.lease_token)
    item = lock_one(store, "i1", known_history={"i1": ("another run", 1, 4)})  # invariant 9: everything
    assert item.history_from == 0 and len(item.history) == 4


def test_release_false_keeps_and_extends_the_lease(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    item = lock_one(store, "i1", lease_seconds=10)
    clock.advance(8)
    assert commit(store, item, release=False) is Outcome.OK
    raise_event(store, "i1")
    clock.advance(5)  # past the first expiry, within the extension
    assert lock(store, "w2") == []
    store.renew_orchestration_lease("i1", item.lease_token, 10)  # still ours
    store.abandon_orchestration("i1", item.lease_token)
    assert kinds(lock_one(store, "i1", owner="w2").messages) == ["EventRaised"]


def test_a_kept_lease_not_extended_expires_when_it_would_have(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    item = lock_one(store, "i1", lease_seconds=10)
    clock.advance(4)
    assert commit(store, item, release=False, extend_lease=False) is Outcome.OK
    raise_event(store, "i1")
    clock.advance(5)  # 9 s after the lock: the lease holds
    assert lock(store, "w2") == []
    clock.advance(2)  # 11 s: it expired as it was going to, whatever was committed under it
    assert kinds(lock_one(store, "i1", owner="w2").messages) == ["EventRaised"]


# --- atomicity ---------------------------------------------------------------------------


def test_commit_is_atomic_under_fault(store: Store) -> None:
    start(store, "i1")
    item = lock_one(store, "i1")
    store.fault_hook = FailAt("commit_turns:inside")
    full = turn(
        item,
        custom_status="busy",
        activities=[task()],
        messages=[Message("other", EventRaised(timestamp=1.0, name="X"))],
        children=[ChildStart("c1", "child", None, ParentRef("i1", 1, 2))],
    )
    with pytest.raises(InjectedFault):
        store.commit_turns([full])
    rec = store.get_instance("i1")
    assert rec is not None and rec.status == OrchestrationStatus.PENDING and rec.history_event_count == 0
    assert rec.custom_status is None and rec.stats.turns == 0
    assert store.get_history("i1") == [] and store.activity_tasks("i1") == []
    assert kinds(store.pending_messages("i1")) == ["ExecutionStarted"]
    assert store.get_instance("c1") is None and store.pending_messages("other") == []
    store.fault_hook = None
    assert store.commit_turns([full]) == [Outcome.OK]  # the lease survived the failed attempt
    assert store.get_instance("c1") is not None and len(store.activity_tasks("i1")) == 1
    rec = store.get_instance("i1")
    assert rec is not None and (rec.status, rec.custom_status, rec.history_event_count) == (
        RUNNING,
        "busy",
        2,
    )


def test_every_write_rolls_back_when_the_fault_hook_fails(store: Store) -> None:
    running(store, "i1")
    store.commit_turns([])
    hook = FailAt(
        "create_instance:inside",
        "enqueue_messages:inside",
        "lock_orchestrations:inside",
        times=None,
    )
    store.fault_hook = hook
    with pytest.raises(InjectedFault):
        start(store, "i2")
    with pytest.raises(InjectedFault):
        raise_event(store, "i1")
    assert store.get_instance("i2") is None and store.pending_messages("i1") == []
    store.fault_hook = None
    raise_event(store, "i1")
    store.fault_hook = hook
    with pytest.raises(InjectedFault):
        lock(store)
    store.fault_hook = None
    [msg] = store.pending_messages("i1")
    assert msg.delivery_count == 0
    assert lock_one(store, "i1").messages[0].delivery_count == 1  # no lease was left behind
    assert hook.fired == 3


def test_activity_completion_is_atomic_under_fault(store: Store) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task()]) is Outcome.OK
    [work] = store.lock_activities("a1", lease_seconds=LEASE)
    store.fault_hook = FailAt("complete_activities:inside")
    with pytest.raises(InjectedFault):
        store.complete_activities([done(work)])
    assert store.pending_messages("i1") == []
    [row] = store.activity_tasks("i1")
    assert row.lease_token == work.lease_token
    store.fault_hook = None
    assert store.complete_activities([done(work)]) == [Outcome.OK]
    assert kinds(store.pending_messages("i1")) == ["ActivityCompleted"] and store.activity_tasks("i1") == []


# --- fencing -----------------------------------------------------------------------------


def test_stale_token_commit_is_lease_lost_and_writes_nothing(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    stale = lock_one(store, "i1", owner="w1")
    clock.advance(LEASE + 1)
    fresh = lock_one(store, "i1", owner="w2")
    assert commit(store, stale, status=COMPLETED, activities=[task()]) is Outcome.LEASE_LOST
    rec = store.get_instance("i1")
    assert rec is not None and rec.status == OrchestrationStatus.PENDING
    assert store.get_history("i1") == [] and store.activity_tasks("i1") == []
    assert len(store.pending_messages("i1")) == 1
    assert commit(store, fresh) is Outcome.OK
    assert commit(store, fresh) is Outcome.LEASE_LOST  # released: the token is spent


def test_an_expired_lease_not_yet_taken_over_still_commits(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    item = lock_one(store, "i1")
    clock.advance(LEASE * 3)
    assert commit(store, item) is Outcome.OK


def test_renew_and_abandon_with_a_stale_token_raise_lease_lost(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    stale = lock_one(store, "i1", owner="w1")
    assert store.renew_orchestration_lease("i1", stale.lease_token, 50) == clock() + 50
    clock.advance(51)
    fresh = lock_one(store, "i1", owner="w2")
    with pytest.raises(LeaseLost):
        store.renew_orchestration_lease("i1", stale.lease_token, 50)
    with pytest.raises(LeaseLost):
        store.abandon_orchestration("i1", stale.lease_token)
    assert lock(store, "w3") == []  # the failed abandon released nothing
    store.abandon_orchestration("i1", fresh.lease_token)
    with pytest.raises(LeaseLost):
        store.abandon_orchestration("i1", fresh.lease_token)


def test_abandon_redelivers_after_retry_after(store: Store, clock: FakeClock) -> None:
    start(store, "i1")
    item = lock_one(store, "i1")
    store.abandon_orchestration("i1", item.lease_token, retry_after=5)
    assert lock(store) == []
    clock.advance(5)
    again = lock_one(store, "i1")
    assert again.messages[0].message_id == item.messages[0].message_id
    assert again.messages[0].delivery_count == 2


def test_group_commit_with_one_lease_lost_item(store: Store, clock: FakeClock) -> None:
    start(store, "a")
    start(store, "b")
    item_a = lock_one(store, "a", lease_seconds=100)
    item_b = lock_one(store, "b", lease_seconds=10)
    clock.advance(11)
    lock_one(store, "b", owner="w2")
    outcomes = store.commit_turns([turn(item_a, activities=[task("a")]), turn(item_b, activities=[task("b")])])
    assert outcomes == [Outcome.OK, Outcome.LEASE_LOST]
    assert len(store.get_history("a")) == 2 and len(store.activity_tasks("a")) == 1
    assert store.get_history("b") == [] and store.activity_tasks("b") == []
    assert len(store.pending_messages("b")) == 1


def test_a_turn_whose_messages_were_already_consumed_writes_nothing(store: Store) -> None:
    running(store, "i1")
    raise_event(store, "i1", "m1")
    raise_event(store, "i1", "m2")
    item = lock_one(store, "i1")
    m1, m2 = item.messages
    first = turn(item, new_events=[m2.event], consumed=[m2.message_id], release=False)
    again = turn(
        item,
        new_events=[m1.event, m2.event],
        consumed=[m1.message_id, m2.message_id],
        discarded=[(m1.message_id, DiscardReason.DUPLICATE, None)],
        activities=[task()],
    )
    assert store.commit_turns([first, again]) == [Outcome.OK, Outcome.LEASE_LOST]
    assert [m.message_id for m in store.pending_messages("i1")] == [m1.message_id]
    assert store.discarded_messages() == [] and store.activity_tasks("i1") == []
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted", "EventRaised"]


def test_a_plain_turn_whose_message_was_consumed_before_writes_nothing(store: Store) -> None:
    """Alone in its commit and holding the lease, a turn applying a message another turn
    applied already writes nothing (the check of each consumed message)."""
    running(store, "i1")
    raise_event(store, "i1", "m1")
    item = lock_one(store, "i1")
    [m1] = item.messages
    assert commit(store, item, new_events=[m1.event], consumed=[m1.message_id], release=False) is Outcome.OK
    assert commit(store, item, new_events=[m1.event], activities=[task()], release=False) is Outcome.LEASE_LOST
    assert store.activity_tasks("i1") == []
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted", "EventRaised"]


def test_a_turn_of_another_execution_or_run_writes_nothing(store: Store) -> None:
    """Holding the lease is not enough: the turn must be of the instance's current run and
    execution (invariant 9)."""
    running(store, "i1")
    raise_event(store, "i1")
    item = lock_one(store, "i1")
    later = dataclasses.replace(turn(item, activities=[task(execution_id=2)]), execution_id=2)
    other = turn(item, run_id="another-run", activities=[task()])
    assert store.commit_turns([later]) == [Outcome.LEASE_LOST]
    assert store.commit_turns([other]) == [Outcome.LEASE_LOST]
    assert store.activity_tasks("i1") == [] and len(store.pending_messages("i1")) == 1
    assert kinds(store.get_history("i1")) == ["TurnStarted", "ExecutionStarted"]
    assert commit(store, item) is Outcome.OK


def test_a_terminal_instance_refuses_further_turns(store: Store) -> None:
    start(store, "i1")
    item = lock_one(store, "i1")
    assert commit(store, item, status=COMPLETED, output=1, release=False) is Outcome.OK
    assert commit(store, item, consumed=[], status=RUNNING) is Outcome.LEASE_LOST
    rec = store.get_instance("i1")
    assert rec is not None and rec.status == COMPLETED and rec.output == 1


def test_one_group_commit_keeps_each_turns_own_effects(store: Store) -> None:
    """A batch of turns of different kinds commits each as it would alone: one completes
    (its queued task discarded), one continues as new, one starts a child, one keeps its
    lease, one is fenced out."""
    for iid in ("done", "again", "parent", "kept", "fenced"):
        running(store, iid)
        raise_event(store, iid)
    items = {i.instance.instance_id: i for i in lock(store)}
    assert store.commit_turns([turn(items["done"], consumed=[], activities=[task("done")], release=False)]) == [
        Outcome.OK
    ]
    stale = dataclasses.replace(turn(items["fenced"]), lease_token="not-the-token")
    outcomes = store.commit_turns(
        [
            turn(items["done"], status=COMPLETED, output="result"),
            turn(items["again"], continue_as_new=True, continue_as_new_input="next"),
            turn(items["parent"], children=[ChildStart("child", "wf", 1, ParentRef("parent", 1, 7))]),
            turn(items["kept"], activities=[task("kept")], release=False),
            stale,
        ]
    )
    assert outcomes == [Outcome.OK] * 4 + [Outcome.LEASE_LOST]
    done_rec, again_rec = store.get_instance("done"), store.get_instance("again")
    assert done_rec is not None and done_rec.status == COMPLETED and done_rec.output == "result"
    assert store.activity_tasks("done") == [] and kinds(store.discarded_messages(instance_id="done")) == [
        "ActivityScheduled"
    ]
    assert again_rec is not None and again_rec.execution_id == 2 and again_rec.input == "next"
    child = store.get_instance("child")
    assert child is not None and child.parent == ParentRef("parent", 1, 7)
    assert [t.name for t in store.activity_tasks("kept")] == ["act"]
    assert kinds(store.pending_messages("fenced")) == ["EventRaised"]
    assert kinds(store.get_history("fenced")) == ["TurnStarted", "ExecutionStarted"]
    # Only the released instances with work are handed out again; "kept" is still leased.
    assert sorted(i.instance.instance_id for i in lock(store, "w2")) == ["again", "child"]


def test_one_lock_batch_sorts_each_candidates_messages_on_its_own(store: Store, clock: FakeClock) -> None:
    """A batch of candidates where one is deliverable, one terminal and one missing: only the
    first is handed out; the others' messages are discarded and deferred respectively."""
    running(store, "live")
    raise_event(store, "live")
    start(store, "ended")
    assert commit(store, lock_one(store, "ended"), status=COMPLETED) is Outcome.OK
    raise_event(store, "ended")
    raise_event(store, "missing")
    items = lock(store)
    assert [(i.instance.instance_id, kinds(i.messages)) for i in items] == [("live", ["EventRaised"])]
    assert kinds(store.discarded_messages(instance_id="ended")) == ["EventRaised"]
    [deferred] = store.pending_messages("missing")
    assert deferred.delivery_count == 1 and deferred.visible_at > clock()
