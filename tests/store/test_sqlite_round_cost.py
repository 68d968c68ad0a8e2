"""SQLite: what a worker's rounds cost does not grow with the instances other workers hold.

Cost is counted in SQLite's own virtual-machine instructions (a progress handler on the
store's connections), which do not depend on the machine's speed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import perdure

app = perdure.App()


@app.activity
def inc(x: int) -> int:
    """The next number."""
    return x + 1


@app.orchestration
async def count_to(ctx: perdure.OrchestrationContext, n: int) -> int:
    """``n`` sequential activities."""
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(inc, x)
    return x


class Counted:
    """SQLite VM instructions run by the connections opened meanwhile, in steps of 100."""

    def __init__(self) -> None:
        self.on = False
        self.steps = 0

    def tick(self) -> int:
        if self.on:
            self.steps += 1
        return 0  # go on

    @contextmanager
    def connections(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        connect = sqlite3.connect

        def counted_connect(*args, **kwargs):
            conn = connect(*args, **kwargs)
            conn.set_progress_handler(self.tick, 100)
            return conn

        with monkeypatch.context() as patch:
            patch.setattr(sqlite3, "connect", counted_connect)
            yield


def steps_of_a_chain(path: Path, held_by_others: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """VM steps of a 20-step chain run by a worker while another worker holds the leases of
    ``held_by_others`` running instances (their activities run: no messages queued)."""
    url = f"sqlite:///{path}"
    perdure.open_store(url).close()
    with sqlite3.connect(path) as conn:
        rows = [(f"held-{n}",) for n in range(held_by_others)]
        conn.executemany(
            "INSERT INTO instances (instance_id, name, status, created_at, last_updated_at, run_id)"
            " VALUES (?, 'count_to', 'RUNNING', 0, 0, 'r')",
            rows,
        )
        conn.executemany(
            "INSERT INTO orchestration_leases (instance_id, owner, token, expires_at, lease_seconds, locked_at)"
            " VALUES (?, 'other-worker', 't', 1e12, 60, 0)",
            rows,
        )
    counted = Counted()
    with counted.connections(monkeypatch):
        store = perdure.open_store(url)
        client = perdure.Client(store)
        try:
            with perdure.Worker(app, store, poll_interval=1.0):
                client.wait(client.start(count_to, 1), timeout=30)  # warm-up
                counted.on = True
                assert client.wait(client.start(count_to, 20), timeout=30).output == 20
                counted.on = False
        finally:
            store.close()
    return counted.steps


def test_a_round_costs_the_same_however_many_instances_other_workers_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = steps_of_a_chain(tmp_path / "few.db", 10, monkeypatch)
    many = steps_of_a_chain(tmp_path / "many.db", 3000, monkeypatch)
    assert few > 0 and many < 1.5 * few, (few, many)
