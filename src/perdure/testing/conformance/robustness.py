"""Conformance: one instance's bad data or back-off never disturbs the others, nor the
order of its own messages."""

from __future__ import annotations

from perdure.core.history import ActivityFailed, ExecutionStarted, TurnStarted, UndecodableEvent
from perdure.store.base import DeadLetterReason, Message, Outcome, Store
from perdure.testing.conformance.helpers import commit, kinds, lock, lock_one, raise_event, running
from perdure.testing.faults import FakeClock


def _undecodable_event() -> ExecutionStarted:
    """An event that encodes but cannot be decoded back (its ``parent`` is not a ParentRef):
    the portable way to store a corrupt history event through the Store interface."""
    return ExecutionStarted(timestamp=1.0, name="wf", parent="not a parent")  # type: ignore[arg-type]


def test_an_undecodable_history_is_reported_on_its_item_not_raised(store: Store) -> None:
    """One instance's unreadable history is handed over as ``history_error`` on its item;
    the lock does not raise and the other instance of the batch is served normally."""
    running(store, "bad")
    running(store, "good")
    raise_event(store, "bad")
    item = lock_one(store, "bad")
    corrupt = [TurnStarted(timestamp=1.0), _undecodable_event()]
    assert commit(store, item, new_events=corrupt) is Outcome.OK
    raise_event(store, "bad")
    raise_event(store, "good")
    items = {i.instance.instance_id: i for i in lock(store)}
    assert sorted(items) == ["bad", "good"]  # the batch is not broken by one instance
    bad, good = items["bad"], items["good"]
    assert bad.history == () and bad.history_error is not None
    assert "history event 3 of execution 1 cannot be decoded" in bad.history_error
    assert kinds(bad.messages) == ["EventRaised"]  # locked with its messages, to be failed
    assert good.history_error is None and len(good.history) == 2


def test_an_undecodable_event_the_caller_already_holds_is_not_decoded(store: Store) -> None:
    """Only the part of the history the caller lacks is decoded (``known_history``)."""
    running(store, "bad")
    raise_event(store, "bad")
    item = lock_one(store, "bad")
    corrupt = [TurnStarted(timestamp=1.0), _undecodable_event()]
    assert commit(store, item, new_events=corrupt) is Outcome.OK
    raise_event(store, "bad")
    again = lock_one(store, "bad", known_history={"bad": (item.instance.run_id, 1, 4)})
    assert again.history_error is None and again.history_from == 4 and again.history == ()


def test_an_undecodable_message_is_dead_lettered_and_the_others_delivered(store: Store) -> None:
    """A queued message this version cannot decode (written by a newer version, or damaged)
    does not break the lock, nor reading the queue: it is dead-lettered, reason
    ``undecodable``, with its stored text as it was; its instance's other messages and the
    other instances of the batch are delivered as usual."""
    running(store, "bad")
    running(store, "good")
    corrupt = ActivityFailed(timestamp=1.0, task_id=7, failure="not a failure")  # type: ignore[arg-type]
    store.enqueue_messages([Message("bad", corrupt, 1)])
    raise_event(store, "bad")
    raise_event(store, "good")
    queued = store.pending_messages("bad")
    assert [type(m.event).__name__ for m in queued] == ["UndecodableEvent", "EventRaised"]
    items = {i.instance.instance_id: i for i in lock(store)}
    assert sorted(items) == ["bad", "good"]
    assert kinds(items["bad"].messages) == ["EventRaised"] and kinds(items["good"].messages) == ["EventRaised"]
    [dead] = store.dead_letters(instance_id="bad")
    assert dead.reason == DeadLetterReason.UNDECODABLE and dead.enqueued_at == queued[0].enqueued_at
    assert isinstance(dead.event, UndecodableEvent) and '"failure":"not a failure"' in dead.event.text
    assert "cannot decode" in dead.event.error
    assert commit(store, items["bad"]) is Outcome.OK and store.pending_messages("bad") == []


def test_abandon_with_retry_after_keeps_the_message_order(store: Store, clock: FakeClock) -> None:
    """A message enqueued during an abandon's back-off does not overtake the queued ones."""
    running(store, "i1")
    raise_event(store, "i1", "first")
    item = lock_one(store, "i1")
    store.abandon_orchestration("i1", item.lease_token, retry_after=5)
    raise_event(store, "i1", "second")  # enqueued during the back-off
    assert lock(store) == []
    assert store.next_visible_at() == clock() + 5
    clock.advance(5)
    again = lock_one(store, "i1")
    assert [m.event.name for m in again.messages] == ["first", "second"]  # type: ignore[attr-defined]
