"""SQLite: what a worker's rounds cost does not grow with the rest of the fleet's rows.

Cost is counted in SQLite's own virtual-machine instructions (a progress handler on the
store's connections), which do not depend on the machine's speed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bench.crowded import crowd
from bench.workloads import app, chain

import perdure


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


def steps_of_a_chain(path: Path, crowded_by: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """VM steps of a 20-step chain run by a worker on a store crowded by the rest of a fleet
    (``bench.crowded``: ``crowded_by`` finished instances, and as many running ones that
    another worker holds, each with a message and a task due later)."""
    url = f"sqlite:///{path}"
    crowd("sqlite", url, crowded_by)
    counted = Counted()
    with counted.connections(monkeypatch):
        store = perdure.open_store(url)
        client = perdure.Client(store)
        try:
            with perdure.Worker(app, store, poll_interval=1.0):
                client.wait(client.start(chain, 1), timeout=30)  # warm-up
                counted.on = True
                assert client.wait(client.start(chain, 20), timeout=30).output == 20
                counted.on = False
        finally:
            store.close()
    return counted.steps


def test_a_round_costs_the_same_however_many_rows_the_rest_of_the_fleet_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = steps_of_a_chain(tmp_path / "few.db", 10, monkeypatch)
    many = steps_of_a_chain(tmp_path / "many.db", 3000, monkeypatch)
    assert few > 0 and many < 1.5 * few, (few, many)
