"""When a worker round looks for new orchestration work (:class:`perdure.runtime.rounds.LookOut`).

Where the store signals every process's commits, a round that cannot have anything new to
find locks no instances (its reads then go with the COMMIT on PostgreSQL); every other
round looks. Each case is a reason new work may have come, and must make the next round look.
"""

from __future__ import annotations

import time

import pytest

from perdure.runtime.rounds import LookOut
from perdure.store.base import RoundRequest, RoundResult
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS, Notifier
from perdure.testing.faults import FakeClock

POLL = 1.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def notifier() -> Notifier:
    notifier = Notifier()
    notifier.every_process = True
    return notifier


def request(limit: int = 10) -> RoundRequest:
    return RoundRequest(owner="w1", lease_seconds=30.0, orchestration_limit=limit)


def result(now: float, *, locked: int = 0, next_message_at: float | None = None) -> RoundResult:
    return RoundResult([], [object()] * locked, [], [], next_message_at, None, now, now)  # type: ignore[list-item]


def quiet(lookout: LookOut, clock: FakeClock) -> None:
    """A round that looks and finds nothing, leaving nothing due."""
    assert lookout.begin()
    lookout.end(True, request(), result(clock()), again=False)


def test_a_round_after_a_quiet_look_does_not_look_again(notifier, clock):
    lookout = LookOut(notifier, POLL, clock)
    quiet(lookout, clock)
    assert not lookout.begin()
    notifier.notify(ACTIVITIES)  # another queue's signal changes nothing
    assert not lookout.begin()


def test_a_signal_of_the_orchestration_queue_makes_the_next_round_look(notifier, clock):
    lookout = LookOut(notifier, POLL, clock)
    quiet(lookout, clock)
    notifier.notify(ORCHESTRATIONS)
    assert lookout.begin()


def test_a_signal_during_the_looking_round_is_not_lost(notifier, clock):
    """The signal count is read before the round's transaction: a message enqueued while
    the round ran (after its look) makes the next round look."""
    lookout = LookOut(notifier, POLL, clock)
    assert lookout.begin()
    notifier.notify(ORCHESTRATIONS)  # while the round runs
    lookout.end(True, request(), result(clock()), again=False)
    assert lookout.begin()


def test_work_seen_coming_due_makes_a_round_look_once_it_is_due(notifier, clock):
    lookout = LookOut(notifier, POLL, clock)
    assert lookout.begin()
    lookout.end(True, request(), result(clock(), next_message_at=clock() + 0.5), again=False)
    assert not lookout.begin()
    clock.advance(0.5)
    assert lookout.begin()


def test_a_timer_a_round_without_a_look_created_is_looked_for_when_due(notifier, clock):
    lookout = LookOut(notifier, POLL, clock)
    quiet(lookout, clock)
    assert not lookout.begin()
    lookout.end(False, request(0), result(clock(), next_message_at=clock() + 0.2), again=False)
    assert not lookout.begin()
    clock.advance(0.2)
    assert lookout.begin()


def test_a_full_look_or_a_refused_turn_makes_the_next_round_look(notifier, clock):
    lookout = LookOut(notifier, POLL, clock)
    assert lookout.begin()
    lookout.end(True, request(limit=2), result(clock(), locked=2), again=False)  # more may wait
    assert lookout.begin()
    lookout.end(True, request(), result(clock()), again=False)
    assert not lookout.begin()
    lookout.end(False, request(0), result(clock()), again=True)  # a turn was refused
    assert lookout.begin()


def test_a_round_looks_at_least_every_poll_interval(notifier, clock):
    lookout = LookOut(notifier, 0.05, clock)
    quiet(lookout, clock)
    assert not lookout.begin()
    time.sleep(0.06)
    assert lookout.begin()


def test_every_round_looks_where_other_processes_are_not_signalled(clock):
    lookout = LookOut(Notifier(), POLL, clock)  # SQLite: no signals from other processes
    quiet(lookout, clock)
    assert lookout.begin()


def test_a_round_whose_turns_send_messages_looks(notifier, clock):
    """A turn that starts a child, messages another instance or ends a child instance
    queues a message the same transaction can lock: the round looks. A turn that ends an
    instance without a parent queues nothing: the round does not look."""
    from perdure.core.status import OrchestrationStatus
    from perdure.store.base import Message, TurnCommit

    lookout = LookOut(notifier, POLL, clock)
    quiet(lookout, clock)
    step = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.RUNNING)
    assert not lookout.begin([step])
    sends = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.RUNNING, messages=[Message("other", None)])  # type: ignore[arg-type]
    ends_child = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.COMPLETED, may_report=True)
    ends_top_level = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.COMPLETED, may_report=False)
    assert lookout.begin([step, sends])
    assert lookout.begin([ends_child])
    assert not lookout.begin([ends_top_level])
