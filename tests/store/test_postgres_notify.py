"""PostgreSQL: LISTEN/NOTIFY wakes waiters of other store objects (other processes)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import perdure
from perdure.core.history import EventRaised
from perdure.core.status import OrchestrationStatus
from perdure.store.base import Message, NewInstance, Outcome, RoundRequest
from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS
from perdure.store.postgres import PostgresStore, listen, wire
from perdure.store.postgres.queries import Q
from perdure.testing.conformance.helpers import LEASE, commit, lock_one, running, task, turn
from perdure.testing.conformance.rounds import handed, handed_turn, with_task
from perdure.testing.faults import FailAt, InjectedFault
from tests import pgserver

TOPICS = (ORCHESTRATIONS, ACTIVITIES, INSTANCES)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database."""
    with pgserver.fresh_database() as url:
        yield url


@pytest.fixture
def stores(pg_url: str) -> Iterator[Callable[..., PostgresStore]]:
    """Open stores on the test's database; each listener is subscribed before it is returned."""
    opened: list[PostgresStore] = []

    def make(**options: Any) -> PostgresStore:
        store = PostgresStore(pg_url, **options)
        opened.append(store)
        if store.listener is not None:
            assert store.listener.wait_listening(5)
        return store

    yield make
    for store in opened:
        store.close()


def woken(store: PostgresStore, topic: str, action: Callable[[], Any], timeout: float = 1.0) -> float | None:
    """Seconds until ``topic`` is signalled on ``store`` after ``action``, or None."""
    seen = store.notifier.snapshot((topic,))
    started = time.monotonic()
    action()
    if store.notifier.wait((topic,), seen, timeout):
        return time.monotonic() - started
    return None


def test_writes_wake_the_waiters_of_another_store_within_a_second(
    stores: Callable[..., PostgresStore],
) -> None:
    writer, idle = stores(), stores()
    assert woken(idle, ORCHESTRATIONS, lambda: writer.create_instance(NewInstance("i1", "wf", None))) is not None
    writer.create_instance(NewInstance("i2", "wf", None))
    ending = lock_one(writer, "i2")
    with idle.notifier.following(INSTANCES):  # as a waiter of that process does, which also
        idle.watch_instance("i2")  # marks the instance watched: only those ends are signalled
        assert woken(idle, INSTANCES, lambda: commit(writer, ending, status=OrchestrationStatus.COMPLETED)) is not None
    item = lock_one(writer, "i1")
    assert woken(idle, ACTIVITIES, lambda: commit(writer, item, activities=[task()])) is not None
    event = EventRaised(name="E")
    assert woken(idle, ORCHESTRATIONS, lambda: writer.enqueue_messages([Message("i1", event)])) is not None


def test_a_rolled_back_write_wakes_nobody(stores: Callable[..., PostgresStore]) -> None:
    writer, idle = stores(), stores()
    writer.fault_hook = FailAt("create_instance:inside")

    def failing() -> None:
        with pytest.raises(InjectedFault):
            writer.create_instance(NewInstance("i1", "wf", None))

    assert woken(idle, ORCHESTRATIONS, failing, timeout=0.3) is None
    assert writer.get_instance("i1") is None


def test_reads_wake_nobody(stores: Callable[..., PostgresStore]) -> None:
    writer, idle = stores(), stores()
    running(writer, "i1")
    time.sleep(0.1)  # let the notifications of the setup arrive
    for topic in TOPICS:
        assert woken(idle, topic, lambda: (writer.get_instance("i1"), writer.queue_stats()), timeout=0.2) is None


def test_notify_off_sends_and_listens_to_nothing(stores: Callable[..., PostgresStore]) -> None:
    quiet, idle = stores(notify=False), stores()
    assert quiet.listener is None
    assert woken(idle, ORCHESTRATIONS, lambda: quiet.create_instance(NewInstance("i1", "wf", None)), 0.3) is None
    assert woken(quiet, ORCHESTRATIONS, lambda: idle.create_instance(NewInstance("i2", "wf", None)), 0.3) is None
    # its own process is still woken directly
    assert woken(quiet, ORCHESTRATIONS, lambda: quiet.create_instance(NewInstance("i3", "wf", None))) is not None


def test_the_listener_reconnects_after_losing_its_connection(stores: Callable[..., PostgresStore], pg_url: str) -> None:
    writer, idle = stores(), stores(application_name="idle")
    assert idle.listener is not None
    seen = idle.notifier.snapshot(TOPICS)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'idle-listener'"
        ).fetchall()
    assert killed == [(True,)]
    deadline = time.monotonic() + 5
    while idle.listener.connections < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert idle.listener.connections == 2 and idle.listener.wait_listening(5)
    # after a reconnection every topic is signalled: something may have been missed
    assert idle.notifier.wait(TOPICS, seen, 1.0)
    assert woken(idle, ORCHESTRATIONS, lambda: writer.create_instance(NewInstance("i1", "wf", None))) is not None


def test_a_followed_topic_is_subscribed_again_after_the_listener_reconnects(
    stores: Callable[..., PostgresStore], pg_url: str
) -> None:
    """The connection dies while a waiter follows instance ends: the new connection
    subscribes to them again, and an instance that ends elsewhere then wakes the waiter."""
    writer, idle = stores(), stores(application_name="idle")
    assert idle.listener is not None
    with idle.notifier.following(INSTANCES):
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'idle-listener'"
            )
        deadline = time.monotonic() + 5
        while not (idle.listener.connections == 2 and idle.listener.followed == {INSTANCES}):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert woken(idle, INSTANCES, ends_elsewhere(writer, "i1")) is not None


def test_close_stops_the_listener_at_once(stores: Callable[..., PostgresStore]) -> None:
    store = stores()
    assert store.listener is not None
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 1.0
    assert not store.listener.is_alive()
    store.close()  # idempotent


def test_a_round_that_locks_no_instances_wakes_other_processes_only_for_work_left_due(
    stores: Callable[..., PostgresStore],
) -> None:
    """Such a round sends its due times with the COMMIT, and its NOTIFYs with them, by the
    rule of every round: a queue is signalled only if it holds work due now."""
    writer, other = stores(), stores()
    writer.create_instances([NewInstance("i1", "wf", None), NewInstance("i2", "wf", None)])
    items = {i: lock_one(writer, i) for i in ("i1", "i2")}

    def round_of(iid: str, activity_limit: int) -> None:
        request = RoundRequest(
            owner="w1",
            lease_seconds=LEASE,
            commits=[turn(items[iid], activities=[task(iid)])],
            activity_limit=activity_limit,
            orchestration_limit=0,
        )
        assert writer.run_round(request).turns == [Outcome.OK]

    # The task it created, it took: no other process is woken.
    assert woken(other, ACTIVITIES, lambda: round_of("i1", 10), timeout=0.5) is None
    # A task it left (no room for it): the other processes' activity takers are woken.
    assert woken(other, ACTIVITIES, lambda: round_of("i2", 0)) is not None


def test_a_round_that_releases_an_instance_with_messages_queued_meanwhile_wakes_every_process(
    stores: Callable[..., PostgresStore],
) -> None:
    """Messages that came while the round's transaction held the lease are for the next
    worker to look: the round wakes this process's waiters once it has committed, and sends
    the other processes' NOTIFY itself (its COMMIT does not wait for that read). A release
    with nothing queued wakes nobody."""
    writer, other = stores(), stores()
    writer.create_instances([NewInstance("i1", "wf", None), NewInstance("i2", "wf", None)])
    items = {i: lock_one(writer, i) for i in ("i1", "i2")}
    writer.enqueue_messages([Message("i1", EventRaised(timestamp=1.0, name="meanwhile"))])
    time.sleep(0.2)  # that enqueue's own signals have arrived

    def release(iid: str) -> None:
        request = RoundRequest(owner="w1", lease_seconds=LEASE, commits=[turn(items[iid])], orchestration_limit=0)
        assert writer.run_round(request).turns == [Outcome.OK]

    assert woken(other, ORCHESTRATIONS, lambda: release("i2"), timeout=0.5) is None
    seen = writer.notifier.snapshot((ORCHESTRATIONS,))
    assert woken(other, ORCHESTRATIONS, lambda: release("i1")) is not None
    assert writer.notifier.snapshot((ORCHESTRATIONS,)) != seen


def test_a_round_that_releases_an_instance_after_applying_outcomes_handed_over_reads_no_messages(
    stores: Callable[..., PostgresStore], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages due for the instance then are none: the turn's checks found none but those
    it consumed (else it is refused), and the instance's row, locked by the transaction
    since, kept anyone from queueing more. So the round sends no read of them, and its
    release wakes nobody."""
    writer, other = stores(), stores()
    work, token = with_task(writer, owner="w1", keep=True)
    outcome = handed(work)
    sent: list[str] = []
    execute = wire.Pipeline.execute
    monkeypatch.setattr(
        wire.Pipeline, "execute", lambda self, query, params=None: sent.append(query) or execute(self, query, params)
    )
    commits = [handed_turn(writer, "i1", token, [outcome])]
    assert commits[0].release

    def release() -> None:
        request = RoundRequest(
            owner="w1", lease_seconds=LEASE, commits=commits, completions=[outcome], orchestration_limit=0
        )
        assert writer.run_round(request).turns == [Outcome.OK]

    assert woken(other, ORCHESTRATIONS, release, timeout=0.5) is None
    assert Q.due_messages_among not in sent and sent, sent
    assert writer.pending_messages("i1") == []
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM orchestration_leases").fetchone() == (0,)  # released


def test_a_round_that_ends_an_instance_wakes_the_waiters_of_other_processes(
    stores: Callable[..., PostgresStore],
) -> None:
    """The round's last statement sends that NOTIFY too (with its due times, read after
    the COMMIT): every process's ``Client.wait`` on the instance wakes."""
    writer, other = stores(), stores()
    writer.create_instances([NewInstance("i1", "wf", None)])
    ending = dataclasses.replace(turn(lock_one(writer, "i1"), status=OrchestrationStatus.COMPLETED), may_report=False)
    request = RoundRequest(owner="w1", lease_seconds=LEASE, commits=[ending], orchestration_limit=0)
    with other.notifier.following(INSTANCES):  # as Client.wait does
        assert woken(other, INSTANCES, lambda: writer.run_round(request)) is not None


def ends_elsewhere(writer: PostgresStore, iid: str) -> Callable[[], None]:
    """What ends ``iid``, created now and watched (as a wait of another process marks it),
    by a commit of ``writer`` (another process)."""
    writer.create_instance(NewInstance(iid, "wf", None))
    writer.watch_instance(iid)
    item = lock_one(writer, iid)
    return lambda: commit(writer, item, status=OrchestrationStatus.COMPLETED)


def test_a_process_is_woken_by_instances_that_end_elsewhere_only_while_it_follows_them(
    stores: Callable[..., PostgresStore],
) -> None:
    """Only waiters need instance ends: a listener follows them while a client of its
    process waits (or starts), and ``linger`` seconds after, so a worker of a fleet that
    waits on nothing is not woken each time an instance ends anywhere. The subscription,
    and its end, each move the topic's version."""
    writer, other = stores(), stores()
    assert other.listener is not None
    other.listener.linger = 0.3
    assert woken(other, INSTANCES, ends_elsewhere(writer, "i1"), timeout=0.5) is None  # never followed
    before = other.notifier.version(INSTANCES)
    with other.notifier.following(INSTANCES):
        assert other.listener.followed == {INSTANCES} and other.notifier.version(INSTANCES) != before
        assert woken(other, INSTANCES, ends_elsewhere(writer, "i2")) is not None
    assert woken(other, INSTANCES, ends_elsewhere(writer, "i3")) is not None  # within the linger
    subscribed = other.notifier.version(INSTANCES)
    deadline = time.monotonic() + 5
    # The subscription ends (``followed`` empties) just before its UNLISTEN and its signal:
    # wait for both.
    while other.listener.followed or other.notifier.version(INSTANCES) == subscribed:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert woken(other, INSTANCES, ends_elsewhere(writer, "i4"), timeout=0.5) is None


def test_a_follower_that_comes_as_the_subscription_ends_waits_for_the_next_one(
    stores: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener ends a subscription whose linger ran out just as a follower comes (held
    here inside its UNLISTEN until the follower is in): the follower must not take the
    ending subscription for one that holds, but wait for the thread to subscribe again;
    an instance that ends then wakes it."""
    writer, other = stores(), stores()
    assert other.listener is not None
    other.listener.linger = 0.2
    unlistening, follower_in = threading.Event(), threading.Event()
    execute = listen._execute

    def held_unlisten(conn: psycopg.Connection, command: str, topic: str) -> None:
        if command == "UNLISTEN":
            unlistening.set()
            assert follower_in.wait(5)
        execute(conn, command, topic)

    monkeypatch.setattr(listen, "_execute", held_unlisten)
    with other.notifier.following(INSTANCES):
        pass
    assert unlistening.wait(5)  # the linger ran out: the thread is ending the subscription
    threading.Timer(0.2, follower_in.set).start()  # the follower enters meanwhile
    with other.notifier.following(INSTANCES):
        assert follower_in.is_set()  # it waited for the new subscription
        assert woken(other, INSTANCES, ends_elsewhere(writer, "i1")) is not None


def test_a_follower_that_comes_with_a_notification_is_subscribed_at_once(
    stores: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower pokes the listener just as a notification arrives (both are there when
    the thread, held here in forwarding an earlier one, looks again): the thread must
    subscribe then, not take the wake for the notification's alone and leave the follower
    to its timeout."""
    writer, other = stores(), stores()
    assert other.listener is not None
    held, release = threading.Event(), threading.Event()
    notify = other.notifier.notify

    def held_notify(*topics: str) -> None:
        if ORCHESTRATIONS in topics and not held.is_set():
            held.set()
            assert release.wait(5)
        notify(*topics)

    monkeypatch.setattr(other.notifier, "notify", held_notify)
    writer.create_instance(NewInstance("i1", "wf", None))
    assert held.wait(5)  # the thread is forwarding that one
    writer.create_instance(NewInstance("i2", "wf", None))  # a notification arrives meanwhile
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with other.notifier.following(INSTANCES):  # and a follower pokes
        assert other.listener.followed == {INSTANCES}
        assert time.monotonic() - started < 1.5  # not SUBSCRIBE_TIMEOUT


app = perdure.App()
gate = threading.Event()


@app.activity
def gated(n: int) -> int:
    assert gate.wait(10)
    return n + 1


@app.activity
def quick(n: int) -> int:
    return n + 1


@app.orchestration
async def slow(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(gated, n)


@app.orchestration
async def fast(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(quick, n)


def test_waits_on_instances_a_worker_of_the_same_process_ends_do_not_follow_instance_ends(
    stores: Callable[..., PostgresStore],
) -> None:
    """The worker hands each end over to the wait within milliseconds: the listener is not
    subscribed to instance ends for them, so the end's NOTIFY wakes nothing in this process."""
    store = stores()
    assert store.listener is not None
    client = perdure.Client(store)
    with perdure.Worker(app, store):
        for n in range(20):
            assert client.wait(client.start(fast, n), timeout=30).output == n + 1
        assert store.listener.followed == frozenset()


@pytest.mark.parametrize("worker_here", [False, True], ids=["no worker here", "a worker here"])
def test_a_wait_on_an_instance_that_ends_in_another_process_is_woken_by_its_end(
    stores: Callable[..., PostgresStore], worker_here: bool
) -> None:
    """Another process's worker runs the instance. A process with no worker of its own
    follows instance ends as soon as it waits; one with a worker on the store (serving
    other orchestrations here) once the wait has lasted ``LOCAL_WAIT``. Either way the
    end's NOTIFY wakes the wait at once, where polling would find it up to 0.5 s later."""
    waiting, running = stores(), stores()
    client = perdure.Client(waiting)
    gate.clear()
    others = perdure.App()

    @others.activity
    def unused() -> None: ...

    try:
        with perdure.Worker(app, running), perdure.Worker(others, waiting) if worker_here else contextlib.nullcontext():
            iid = client.start(slow, 1)
            released = []
            timer = threading.Timer(2.2, lambda: released.append(time.monotonic()) or gate.set())
            timer.start()
            assert client.wait(iid, timeout=30).output == 2
            woke = time.monotonic() - released[0]
            assert woke < 0.25, woke
            assert waiting.listener is not None and waiting.listener.followed == {INSTANCES}
    finally:
        gate.set()


@contextlib.contextmanager
def reader_url(pg_url: str) -> Iterator[str]:
    """The URL of ``pg_url``'s database for a new role granted only SELECT (dropped after)."""
    name = f"perdure_reader_{uuid.uuid4().hex[:10]}"
    role = sql.Identifier(name)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role))
    try:
        yield pgserver.with_user(pg_url, name)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
            admin.execute(sql.SQL("DROP ROLE {}").format(role))


def test_a_wait_by_a_role_that_may_only_read_sees_the_end_by_polling(
    stores: Callable[..., PostgresStore], pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A wait marks the instance it waits on (``watch_instance``, a write): a role granted
    only SELECT, as a dashboard's may be, is refused the mark. Its waits still see the
    ends, by reading the row as they poll; the store warns once and marks no more."""
    running = stores()
    starter = perdure.Client(running)
    gate.clear()
    with reader_url(pg_url) as url:
        reader = PostgresStore(url)
        try:
            waiting = perdure.Client(reader)
            with perdure.Worker(app, running), caplog.at_level(logging.WARNING, "perdure.store.postgres"):
                for n in (1, 2):
                    iid = starter.start(slow, n)
                    timer = threading.Timer(0.3, gate.set)
                    timer.start()
                    assert waiting.wait(iid, timeout=10).output == n + 1
                    timer.join()
                    gate.clear()
        finally:
            gate.set()
            reader.close()
    refusals = [r for r in caplog.records if "may not mark the instances its waits watch" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]


def test_an_instance_end_is_signalled_to_other_processes_only_if_a_wait_there_watches_it(
    stores: Callable[..., PostgresStore], pg_url: str
) -> None:
    """PostgreSQL wakes every listening backend of the database at each NOTIFY, whatever its
    channels: an end that no wait of another process relies on sends none. A wait that
    does marks its instance first (``watch_instance``). A purge is signalled as before."""
    writer = stores()
    with psycopg.connect(pg_url, autocommit=True) as listening:
        listening.execute('LISTEN "perdure_instances"')
        writer.create_instance(NewInstance("quiet", "wf", None))
        assert commit(writer, lock_one(writer, "quiet"), status=OrchestrationStatus.COMPLETED) is Outcome.OK
        assert list(listening.notifies(timeout=0.5)) == []
        writer.create_instance(NewInstance("watched", "wf", None))
        assert writer.watch_instance("watched").status is OrchestrationStatus.PENDING  # type: ignore[union-attr]
        assert commit(writer, lock_one(writer, "watched"), status=OrchestrationStatus.COMPLETED) is Outcome.OK
        assert [n.channel for n in listening.notifies(timeout=2, stop_after=1)] == ["perdure_instances"]
        assert writer.purge_instances(["quiet"]) == 1
        assert [n.channel for n in listening.notifies(timeout=2, stop_after=1)] == ["perdure_instances"]
    assert writer.watch_instance("nobody") is None


def test_a_wait_that_marks_an_instance_as_it_ends_reads_it_ended(stores: Callable[..., PostgresStore]) -> None:
    """Forced interleaving: the transaction that ends the instance is held before its COMMIT
    (its turn written, the instance's row held, its NOTIFY left out: nobody watched) while a
    wait of another process marks the instance. The mark waits for the row, and the wait
    then reads the instance ended, so it needs no NOTIFY; reading before the mark, it would
    find it still running and sleep through the end."""
    writer, waiter = stores(), stores()
    writer.create_instance(NewInstance("i1", "wf", None))
    item = lock_one(writer, "i1")
    inside, release = threading.Event(), threading.Event()

    def held(point: str) -> None:
        if point == "commit_turns:inside":
            inside.set()
            assert release.wait(5)

    writer.fault_hook = held
    ending = threading.Thread(target=lambda: commit(writer, item, status=OrchestrationStatus.COMPLETED), daemon=True)
    ending.start()
    assert inside.wait(5)
    read: list[Any] = []
    marking = threading.Thread(target=lambda: read.append(waiter.watch_instance("i1")), daemon=True)
    marking.start()
    marking.join(0.3)
    assert marking.is_alive()  # the mark waits for the ending transaction's row
    release.set()
    ending.join(5)
    marking.join(5)
    assert read[0].status is OrchestrationStatus.COMPLETED
