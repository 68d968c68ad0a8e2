"""Conformance: message routing (invariants 3 and 4): deferral, dead letters, discards,
sub-orchestration starts, continue-as-new, and no silent drop under any interleaving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perdure.core.history import (
    ActivityCompleted,
    ContinuedAsNew,
    DiscardReason,
    EventRaised,
    ExecutionStarted,
    ExecutionSuspended,
    ParentRef,
    SubOrchestrationFailed,
    TurnStarted,
)
from perdure.store.base import (
    ChildStart,
    DeadLetterReason,
    InstanceQuery,
    Outcome,
    Store,
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
)
from perdure.testing.faults import FakeClock

# --- routing: deferral, dead letters, discards (invariant 3) ------------------------------


def test_message_for_a_future_execution_is_deferred_then_delivered(store: Store, clock: FakeClock) -> None:
    running(store, "i1")
    raise_event(store, "i1", "early", execution_id=2)
    assert lock(store) == []
    [msg] = store.pending_messages("i1")
    first_delay = msg.visible_at - clock()
    assert msg.delivery_count == 1 and first_delay > 0
    clock.advance(first_delay)
    assert lock(store) == []
    [msg] = store.pending_messages("i1")
    assert msg.delivery_count == 2 and msg.visible_at - clock() > first_delay  # backoff grows
    raise_event(store, "i1", "now")
    item = lock_one(store, "i1")
    assert [m.event.name for m in item.messages] == ["now"]
    assert commit(store, item, continue_as_new=True, continue_as_new_input=2) is Outcome.OK
    clock.advance(60)
    item = lock_one(store, "i1")
    assert item.instance.execution_id == 2
    assert kinds(item.messages) == ["ExecutionStarted", "EventRaised"]
    assert item.messages[1].event.name == "early" and item.messages[1].delivery_count == 3


def test_message_for_a_missing_instance_is_deferred_until_it_exists(store: Store, clock: FakeClock) -> None:
    raise_event(store, "later", "hello")
    assert lock(store) == [] and lock(store, names=["wf@*"]) == []
    [msg] = store.pending_messages("later")
    assert msg.delivery_count == 1 and msg.visible_at > clock()
    clock.advance(1)
    start(store, "later")
    clock.advance(60)
    item = lock_one(store, "later")
    assert kinds(item.messages) == ["ExecutionStarted", "EventRaised"]
    assert store.dead_letters() == [] and store.discarded_messages() == []


def test_undeliverable_message_is_dead_lettered_after_max_deliveries(
    make_store: Callable[..., Store], clock: FakeClock
) -> None:
    store = make_store(max_deliveries=4, defer_backoff=1.0, defer_backoff_cap=2.0)
    raise_event(store, "ghost", "E")
    t0 = clock()
    delays = []
    for _ in range(3):
        assert lock(store) == []
        [msg] = store.pending_messages("ghost")
        delays.append(round(msg.visible_at - clock(), 6))
        clock.advance(2)
    assert delays == [1.0, 2.0, 2.0]  # doubling from defer_backoff, capped
    assert lock(store) == []
    assert store.pending_messages("ghost") == []
    [dead] = store.dead_letters()
    assert (dead.instance_id, dead.reason, dead.delivery_count) == (
        "ghost",
        DeadLetterReason.INSTANCE_NOT_FOUND,
        4,
    )
    assert isinstance(dead.event, EventRaised) and dead.enqueued_at == t0 and dead.dead_lettered_at == clock()
    assert store.dead_letters(instance_id="other") == []
    assert store.queue_stats().dead_letters == 1


def test_default_max_deliveries_is_bounded(store: Store, clock: FakeClock) -> None:
    raise_event(store, "ghost")
    for _ in range(200):
        if store.pending_messages("ghost") == []:
            break
        lock(store)
        clock.advance(60)
    assert [d.delivery_count for d in store.dead_letters()] == [25]


def test_message_for_an_ended_execution_is_discarded_with_a_record(store: Store, clock: FakeClock) -> None:
    item = running(store, "i1")
    raise_event(store, "i1", "go")
    item = lock_one(store, "i1")
    assert commit(store, item, continue_as_new=True) is Outcome.OK
    raise_event(store, "i1", "late", execution_id=1)
    item = lock_one(store, "i1")
    assert kinds(item.messages) == ["ExecutionStarted"]
    [record] = store.discarded_messages(instance_id="i1")
    assert record.reason == DiscardReason.STALE_EXECUTION and record.execution_id == 1
    assert isinstance(record.event, EventRaised) and record.event.name == "late"
    assert record.discarded_at == clock()


def test_message_for_a_terminal_instance_is_discarded_with_a_record(store: Store) -> None:
    start(store, "i1", name="wf")
    assert commit(store, lock_one(store, "i1"), status=COMPLETED) is Outcome.OK
    raise_event(store, "i1", "late")
    assert lock(store, names=["other@*"]) == []  # swept by any worker, whatever its names
    assert store.pending_messages("i1") == []
    [record] = store.discarded_messages()
    assert (record.instance_id, record.reason) == ("i1", DiscardReason.TERMINAL_INSTANCE)


def test_turn_discards_are_recorded(store: Store) -> None:
    running(store, "i1")
    raise_event(store, "i1", "dup")
    raise_event(store, "i1", "ok")
    item = lock_one(store, "i1")
    dup, ok = item.messages
    outcome = commit(
        store,
        item,
        new_events=[TurnStarted(timestamp=1.0), ok.event],
        discarded=[(dup.message_id, DiscardReason.DUPLICATE, "seen before")],
    )
    assert outcome is Outcome.OK
    [record] = store.discarded_messages(instance_id="i1")
    assert (record.reason, record.detail, record.event) == (
        DiscardReason.DUPLICATE,
        "seen before",
        dup.event,
    )
    assert store.pending_messages("i1") == []


# --- sub-orchestrations (invariant 4) ----------------------------------------------------


def test_child_start_creates_a_pending_child_that_knows_its_parent(store: Store) -> None:
    running(store, "p")
    raise_event(store, "p")
    ref = ParentRef("p", 1, 3)
    assert commit(store, lock_one(store, "p"), children=[ChildStart("p::sub::3", "child", {"k": 1}, ref)]) is Outcome.OK
    child = store.get_instance("p::sub::3")
    assert child is not None and (child.status, child.parent, child.input) == (
        "PENDING",
        ref,
        {"k": 1},
    )
    [msg] = store.pending_messages("p::sub::3")
    assert isinstance(msg.event, ExecutionStarted) and msg.event.parent == ref and msg.event.name == "child"
    assert store.list_instances(InstanceQuery(parent_instance_id="p")).items[0].instance_id == "p::sub::3"


def test_child_start_on_a_foreign_id_fails_the_parent_at_once(store: Store) -> None:
    start(store, "taken", name="other")
    assert commit(store, lock_one(store, "taken"), status=COMPLETED, output="mine") is Outcome.OK
    running(store, "p")
    raise_event(store, "p")
    item = lock_one(store, "p")
    outcome = commit(store, item, children=[ChildStart("taken", "child", None, ParentRef("p", 1, 4))])
    assert outcome is Outcome.OK
    taken = store.get_instance("taken")
    assert taken is not None and (taken.status, taken.name, taken.output) == (
        COMPLETED,
        "other",
        "mine",
    )
    [msg] = store.pending_messages("p")
    assert isinstance(msg.event, SubOrchestrationFailed) and msg.event.task_id == 4 and msg.execution_id == 1
    assert msg.event.failure.type == "perdure.errors.InstanceExistsError"
    assert "'taken'" in msg.event.failure.message and "already used by another instance" in msg.event.failure.message
    assert "COMPLETED" in msg.event.failure.message


def test_child_start_redelivered_by_the_same_parent_does_nothing(store: Store) -> None:
    running(store, "p")
    start_child = ChildStart("p::sub::1", "child", None, ParentRef("p", 1, 1))
    for _ in range(2):
        raise_event(store, "p")
        assert commit(store, lock_one(store, "p"), children=[start_child]) is Outcome.OK
    assert store.pending_messages("p") == []
    assert kinds(store.pending_messages("p::sub::1")) == ["ExecutionStarted"]
    # the same id from another execution of the parent is a collision, not a redelivery
    raise_event(store, "p")
    assert commit(store, lock_one(store, "p"), continue_as_new=True) is Outcome.OK
    item = lock_one(store, "p")
    assert commit(store, item, children=[ChildStart("p::sub::1", "child", None, ParentRef("p", 2, 1))]) is Outcome.OK
    [msg] = store.pending_messages("p")
    assert isinstance(msg.event, SubOrchestrationFailed) and msg.execution_id == 2


# --- continue-as-new ---------------------------------------------------------------------


def test_continue_as_new_starts_the_next_execution_with_what_it_carries(store: Store) -> None:
    start(store, "p0")
    running(store, "i1", input="v1", parent=ParentRef("p0", 1, 9, "run-of-p0"))
    raise_event(store, "i1", "go")
    item = lock_one(store, "i1")
    carried = (EventRaised(timestamp=1.0, name="carried", input=42), ExecutionSuspended(reason="hold"))
    events = [
        TurnStarted(timestamp=1.0),
        item.messages[0].event,
        ContinuedAsNew(timestamp=1.0, input="v2"),
    ]
    outcome = commit(
        store,
        item,
        new_events=events,
        continue_as_new=True,
        continue_as_new_input="v2",
        carried=carried,
    )
    assert outcome is Outcome.OK
    rec = store.get_instance("i1")
    assert rec is not None and (
        rec.execution_id,
        rec.status,
        rec.input,
        rec.history_event_count,
        rec.run_id,
    ) == (2, RUNNING, "v2", 0, item.instance.run_id)
    assert kinds(store.get_history("i1", execution_id=1))[-1] == "ContinuedAsNew"
    assert store.get_history("i1") == []
    [start_msg] = store.pending_messages("i1")
    assert (start_msg.execution_id, start_msg.run_id) == (2, item.instance.run_id)
    assert isinstance(start_msg.event, ExecutionStarted)
    event = start_msg.event
    assert (event.execution_id, event.input, event.name, event.run_id) == (2, "v2", "wf", item.instance.run_id)
    assert event.parent == ParentRef("p0", 1, 9, "run-of-p0")
    assert event.carried == carried
    raise_event(store, "i1", "later")
    item = lock_one(store, "i1")
    assert kinds(item.messages) == ["ExecutionStarted", "EventRaised"] and item.history == ()


def test_activity_of_an_ended_execution_is_discarded_after_continue_as_new(store: Store) -> None:
    start(store, "i1")
    assert commit(store, lock_one(store, "i1"), activities=[task("i1", 1)]) is Outcome.OK
    [work] = store.lock_activities("a1", lease_seconds=LEASE)
    raise_event(store, "i1")
    assert commit(store, lock_one(store, "i1"), continue_as_new=True) is Outcome.OK
    assert store.complete_activities([done(work)]) == [Outcome.DISCARDED]
    assert kinds(store.pending_messages("i1")) == ["ExecutionStarted"]
    [record] = store.discarded_messages(instance_id="i1")
    assert (record.reason, record.execution_id) == (DiscardReason.STALE_EXECUTION, 1)
    assert isinstance(record.event, ActivityCompleted) and store.activity_tasks("i1") == []


# --- no silent drop, under any interleaving (invariant 3) --------------------------------

_TARGETS = st.sampled_from(["a", "b", "c", "ghost"])
_EXECUTIONS = st.sampled_from([None, 1, 2, 3])
_OPS = st.lists(
    st.one_of(st.tuples(st.just("send"), _TARGETS, _EXECUTIONS), st.just(("work",)), st.just(("wait",))),
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_every_message_is_applied_discarded_or_dead_lettered_exactly_once(
    make_store: Callable[..., Store], clock: FakeClock, ops: list[tuple[Any, ...]]
) -> None:
    store = make_store(max_deliveries=3, defer_backoff=1.0, defer_backoff_cap=1.0)
    running(store, "a")
    start(store, "b")
    assert commit(store, lock_one(store, "b"), status=COMPLETED) is Outcome.OK
    running(store, "c")
    raise_event(store, "c", "setup")
    assert commit(store, lock_one(store, "c"), continue_as_new=True) is Outcome.OK
    expected: dict[str, str] = {}  # message name -> where it must end up
    fate = {
        ("a", None): "applied",
        ("a", 1): "applied",
        ("a", 2): "dead",
        ("a", 3): "dead",
        ("c", None): "applied",
        ("c", 2): "applied",
        ("c", 1): "discarded",
        ("c", 3): "dead",
    }

    def work() -> None:
        for item in lock(store):
            assert commit(store, item) is Outcome.OK

    for n, op in enumerate(ops):
        if op[0] == "send":
            name = f"m{n}"
            expected[name] = "discarded" if op[1] == "b" else fate.get((op[1], op[2]), "dead")
            raise_event(store, op[1], name, execution_id=op[2])
        elif op[0] == "work":
            work()
        else:
            clock.advance(1.5)
    for _ in range(5):
        work()
        clock.advance(1.5)
    assert all(store.pending_messages(i) == [] for i in ("a", "b", "c", "ghost"))

    found: dict[str, list[str]] = {}
    for iid in ("a", "c"):
        for execution in (1, 2):
            for r in store.get_history(iid, execution_id=execution):
                if isinstance(r.event, EventRaised) and r.event.name != "setup":
                    found.setdefault(r.event.name, []).append("applied")
    for d in store.discarded_messages(limit=1000):
        found.setdefault(d.event.name, []).append("discarded")
    for dl in store.dead_letters(limit=1000):
        found.setdefault(dl.event.name, []).append("dead")
    assert found == {name: [where] for name, where in expected.items()}
