"""SQLite: a worker's first round grows the WAL file to the size it keeps at work, so that
its commits write over the file's pages instead of appending to it (an fsync that must
also make a new length durable costs more), and changes nothing of the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.workloads import _sequence, app

import perdure

PAGE = 4096 + 24  # a WAL frame: its header and a page


def wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, and the file's user_version."""
    with sqlite3.connect(path) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
        found["user_version"] = conn.execute("PRAGMA user_version").fetchall()
    return found


def test_a_workers_first_round_grows_the_wal_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "perdure.db"
    store = perdure.open_store(f"sqlite:///{path}")
    client = perdure.Client(store)
    iid = client.start(_sequence(False), 2)
    before = rows(path)
    assert wal_size(path) < 100 * PAGE
    with perdure.Worker(app, store):
        assert client.wait(iid, timeout=30).output == 2
        grown = wal_size(path)
        assert grown >= 990 * PAGE  # the checkpoint comes at 1,000 pages
    after = rows(path)
    for table in ("schema_migrations", "user_version"):
        assert after[table] == before[table]
    assert after["instances"] != before["instances"]  # the worker's own commits, and only them
    store.close()


def run_one(store: perdure.Store) -> None:
    """Run one orchestration to its end with a worker of ``store`` (its rounds commit)."""
    client = perdure.Client(store)
    with perdure.Worker(app, store):
        assert client.wait(client.start(_sequence(False), 1), timeout=30).output == 1


def test_a_wal_grown_already_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "perdure.db"
    first = perdure.open_store(f"sqlite:///{path}")
    run_one(first)
    grown = wal_size(path)
    assert grown >= 990 * PAGE
    second = perdure.open_store(f"sqlite:///{path}")  # another process, as it were
    run_one(second)
    assert wal_size(path) == grown  # not grown by another 1,000 pages
    first.close()
    second.close()


def test_a_store_whose_commits_are_not_synced_is_not_grown(tmp_path: Path) -> None:
    path = tmp_path / "perdure.db"
    store = perdure.open_store(f"sqlite:///{path}", synchronous="NORMAL")
    run_one(store)
    assert wal_size(path) < 100 * PAGE
    store.close()
