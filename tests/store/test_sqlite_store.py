"""SQLite-specific behaviour: URLs and options, durability across reopen and under SIGKILL,
and exclusivity between two store objects on one file (two processes)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from perdure.core.history import EventRaised
from perdure.errors import InvalidInputError, StoreUnavailableError
from perdure.store import open_store
from perdure.store.base import InstanceQuery, Message, NewInstance, Outcome
from perdure.store.sqlite import SQLiteStore
from perdure.testing.conformance.helpers import commit, lock, lock_one, running, start, task
from perdure.testing.faults import FakeClock

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_urls_open_relative_absolute_and_memory_stores(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:///rel.db")
    assert (tmp_path / "rel.db").exists() and rel.url == "sqlite:///rel.db"
    absolute = open_store(f"sqlite:///{tmp_path / 'abs.db'}")  # sqlite:////tmp/...
    assert (tmp_path / "abs.db").exists()
    mem = open_store("sqlite://:memory:")
    for store in (rel, absolute, mem):
        start(store, "i1")
        assert store.get_instance("i1") is not None
        store.close()
        store.close()  # idempotent
    with pytest.raises(StoreUnavailableError):
        rel.get_instance("i1")
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/x.db"):
        with pytest.raises(InvalidInputError):
            open_store(bad)


def test_memory_stores_are_private_and_shared_between_threads() -> None:
    a, b = SQLiteStore(":memory:"), SQLiteStore(":memory:")
    start(a, "i1")
    assert b.get_instance("i1") is None
    seen = []
    thread = threading.Thread(target=lambda: seen.append(a.get_instance("i1")))
    thread.start()
    thread.join()
    assert seen[0] is not None


def test_options_are_applied_and_checked(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "o.db", synchronous="normal", busy_timeout=2)
    conn = store._db.writer
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2000
    store.close()
    with pytest.raises(InvalidInputError):
        SQLiteStore(tmp_path / "x.db", synchronous="SOMETIMES")
    with pytest.raises(InvalidInputError):
        SQLiteStore(tmp_path / "y.db", max_deliveries=0)


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not an SQLite database, not at all" * 100)
    with pytest.raises(StoreUnavailableError):
        SQLiteStore(path)


def test_data_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    store = SQLiteStore(path)
    running(store, "i1")
    store.close()
    store = SQLiteStore(path)
    rec = store.get_instance("i1")
    assert rec is not None and rec.status == "RUNNING" and len(store.get_history("i1")) == 2
    store.close()


def test_two_store_objects_on_one_file_never_both_hold_an_instance(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    clock = FakeClock()
    stores = [SQLiteStore(path, clock=clock) for _ in range(2)]
    running(stores[0], "i1")
    rounds, per_store = 15, 3
    for r in range(rounds):
        stores[r % 2].enqueue_messages([Message("i1", EventRaised(timestamp=1.0, name=f"E{r}"))])
        barrier = threading.Barrier(2 * per_store, timeout=20)
        won = []

        def racer(store: SQLiteStore, barrier: threading.Barrier = barrier, won: list = won) -> None:
            barrier.wait()
            won.extend(lock(store, instance_ids=["i1"]))

        threads = [threading.Thread(target=racer, args=(s,)) for s in stores for _ in range(per_store)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(won) == 1, f"round {r}: {len(won)} holders"
        assert commit(stores[(r + 1) % 2], won[0]) is Outcome.OK
    history = [r.event for r in stores[0].get_history("i1") if isinstance(r.event, EventRaised)]
    assert [e.name for e in history] == [f"E{r}" for r in range(rounds)]
    for s in stores:
        s.close()


def test_a_takeover_in_another_store_object_fences_the_first(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    clock = FakeClock()
    a, b = SQLiteStore(path, clock=clock), SQLiteStore(path, clock=clock)
    start(a, "i1")
    stale = lock_one(a, "i1")
    clock.advance(60)
    fresh = lock_one(b, "i1", owner="w2")
    assert commit(a, stale, activities=[task()]) is Outcome.LEASE_LOST
    assert commit(b, fresh) is Outcome.OK
    assert a.activity_tasks("i1") == [] and len(a.get_history("i1")) == 2
    a.close()
    b.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from perdure.core.history import EventRaised
    from perdure.store.base import Message, NewActivityTask, NewInstance, TurnCommit
    from perdure.store.sqlite import SQLiteStore

    store = SQLiteStore(sys.argv[1])
    print("ready", flush=True)
    n = 0
    while True:
        iid = f"i{n}"
        store.create_instance(NewInstance(iid, "wf", n))
        [item] = store.lock_orchestrations("w", lease_seconds=60, instance_ids=[iid])
        events = [m.event for m in item.messages] * 20  # a turn of 20 events
        store.commit_turns([TurnCommit(
            instance_id=iid, lease_token=item.lease_token, execution_id=1, new_events=events,
            consumed=[m.message_id for m in item.messages], status="RUNNING",
            activities=[NewActivityTask(iid, 1, t, "act", t) for t in range(5)],
            messages=[Message(f"i{n}", EventRaised(name="self"), 1)],
        )])
        n += 1
    """
)


def test_nothing_is_lost_or_half_written_when_the_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "kill.db"
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.4)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    conn = sqlite3.connect(str(path))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = SQLiteStore(path)
    page = store.list_instances(InstanceQuery(limit=10_000))
    assert len(page.items) > 3
    for rec in page.items:
        history = store.get_history(rec.instance_id)
        messages = store.pending_messages(rec.instance_id)
        tasks = store.activity_tasks(rec.instance_id)
        if rec.status == "PENDING":  # created, turn not committed: nothing of the turn exists
            assert (len(history), len(tasks), [type(m.event).__name__ for m in messages]) == (
                0,
                0,
                ["ExecutionStarted"],
            )
        else:  # the whole turn, never a part of it
            assert rec.history_event_count == len(history) == 20
            assert len(tasks) == 5 and [m.event.name for m in messages] == ["self"]
    store.create_instance(NewInstance("after", "wf", None))  # the lock was released by the kill
    store.close()
