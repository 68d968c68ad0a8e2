"""When a worker round looks at a queue for new work (:class:`perdure.runtime.rounds.LookOut`):
instances to lock in the orchestration queue, tasks to lock in the activity queue.

Where the store signals every process's commits, a round that cannot have anything new to
find in a queue locks nothing from it (on PostgreSQL the reads then go with the COMMIT; a
round that looks at neither queue reads no due times); every other round looks. Each case
is a reason new work may have come, and must make the next round look.
"""

from __future__ import annotations

import time

import pytest

from perdure.runtime.rounds import LookOut, _sends_messages
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


@pytest.fixture(params=[ORCHESTRATIONS, ACTIVITIES])
def topic(request: pytest.FixtureRequest) -> str:
    return request.param


def other(topic: str) -> str:
    return ACTIVITIES if topic == ORCHESTRATIONS else ORCHESTRATIONS


def quiet(lookout: LookOut, clock: FakeClock) -> None:
    """A round that looks and finds nothing, leaving nothing due."""
    assert lookout.begin()
    lookout.end(True, seen_at=clock(), filled=False, due=None)


def test_a_round_after_a_quiet_look_does_not_look_again(notifier, clock, topic):
    lookout = LookOut(notifier, topic, POLL, clock)
    quiet(lookout, clock)
    assert not lookout.begin()
    notifier.notify(other(topic))  # another queue's signal changes nothing
    assert not lookout.begin()


def test_a_signal_of_the_queue_makes_the_next_round_look(notifier, clock, topic):
    lookout = LookOut(notifier, topic, POLL, clock)
    quiet(lookout, clock)
    notifier.notify(topic)
    assert lookout.begin()


def test_a_signal_during_the_looking_round_is_not_lost(notifier, clock, topic):
    """The signal count is read before the round's transaction: work enqueued while the
    round ran (after its look) makes the next round look."""
    lookout = LookOut(notifier, topic, POLL, clock)
    assert lookout.begin()
    notifier.notify(topic)  # while the round runs
    lookout.end(True, seen_at=clock(), filled=False, due=None)
    assert lookout.begin()


def test_work_seen_coming_due_makes_a_round_look_once_it_is_due(notifier, clock, topic):
    lookout = LookOut(notifier, topic, POLL, clock)
    assert lookout.begin()
    lookout.end(True, seen_at=clock(), filled=False, due=clock() + 0.5)
    assert lookout.due == clock() + 0.5
    assert not lookout.begin()
    clock.advance(0.5)
    assert lookout.begin()


def test_work_a_round_without_a_look_created_is_looked_for_when_due(notifier, clock, topic):
    """A timer or a retry's backoff: a round that did not look read when it comes due."""
    lookout = LookOut(notifier, topic, POLL, clock)
    quiet(lookout, clock)
    assert not lookout.begin()
    lookout.end(False, seen_at=clock(), filled=False, due=clock() + 0.2)
    assert not lookout.begin()
    clock.advance(0.2)
    assert lookout.begin()


def test_a_round_that_reads_no_due_times_forgets_nothing_seen_coming_due(notifier, clock, topic):
    lookout = LookOut(notifier, topic, POLL, clock)
    assert lookout.begin()
    lookout.end(True, seen_at=clock(), filled=False, due=clock() + 0.3)
    assert not lookout.begin()
    lookout.end(False, seen_at=clock(), filled=False, due=None)  # read none
    assert lookout.due == clock() + 0.3
    clock.advance(0.3)
    assert lookout.begin()


def test_a_full_look_or_a_refused_turn_makes_the_next_round_look(notifier, clock, topic):
    lookout = LookOut(notifier, topic, POLL, clock)
    assert lookout.begin()
    lookout.end(True, seen_at=clock(), filled=True, due=None)  # more may wait
    assert lookout.begin()
    lookout.end(True, seen_at=clock(), filled=False, due=None)
    assert not lookout.begin()
    lookout.end(False, seen_at=clock(), filled=False, due=None, again=True)  # a turn was refused
    assert lookout.begin()


def test_a_round_looks_at_least_every_poll_interval(notifier, clock, topic):
    lookout = LookOut(notifier, topic, 0.05, clock)
    quiet(lookout, clock)
    assert not lookout.begin()
    time.sleep(0.06)
    assert lookout.begin()


def test_every_round_looks_where_other_processes_are_not_signalled(clock, topic):
    lookout = LookOut(Notifier(), topic, POLL, clock)  # SQLite: no signals from other processes
    quiet(lookout, clock)
    assert lookout.begin()


def test_a_cause_of_the_rounds_own_makes_it_look(notifier, clock, topic):
    lookout = LookOut(notifier, topic, POLL, clock)
    quiet(lookout, clock)
    assert not lookout.begin()
    assert lookout.begin(must=True)


def test_a_round_whose_turns_send_messages_looks_at_the_orchestration_queue():
    """A turn that starts a child, messages another instance or ends a child instance
    queues a message the same transaction can lock: the round looks. A turn that ends an
    instance without a parent queues nothing: the round does not look."""
    from perdure.core.status import OrchestrationStatus
    from perdure.store.base import Message, TurnCommit

    step = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.RUNNING)
    assert not _sends_messages(step)
    sends = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.RUNNING, messages=[Message("other", None)])  # type: ignore[arg-type]
    ends_child = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.COMPLETED, may_report=True)
    ends_top_level = TurnCommit("i1", "t", 1, [], [], OrchestrationStatus.COMPLETED, may_report=False)
    assert _sends_messages(sends)
    assert _sends_messages(ends_child)
    assert not _sends_messages(ends_top_level)


def test_a_round_looks_once_poll_interval_has_passed_on_the_stores_clock(notifier, clock, topic):
    """Work whose time comes while no round reads the due times (a lease of a crashed
    worker expiring) is found by the next look: ``poll_interval`` counts on either clock,
    the store's included (a test's fake clock, which real time does not move)."""
    lookout = LookOut(notifier, topic, POLL, clock)
    quiet(lookout, clock)
    clock.advance(POLL / 2)
    assert not lookout.begin()
    clock.advance(POLL / 2)
    assert lookout.begin()
