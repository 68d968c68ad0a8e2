"""PostgreSQL: the turns of a running instance rewrite its row in place (HOT updates: no
index entry written), as long as its status stays and the second of its last update with
it (``instances_by_updated`` keys on that second, migration 0007)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import psycopg
import pytest
from bench.workloads import app, chain

import perdure
from tests import pgserver
from tests.races.helpers import until


def instance_updates(run: Callable[[perdure.Client], None]) -> tuple[int, int]:
    """On a fresh database, with a worker, ``run(client)``; return the updates of rows of
    ``instances``, and how many of them were HOT, read once every session of the store
    has ended (a session reports its statistics as it ends)."""
    with pgserver.fresh_database() as url:
        store = perdure.open_store(url)
        try:
            with perdure.Worker(app, store):
                run(perdure.Client(store))
        finally:
            store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            until(
                lambda: (
                    conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchone()[0]
                    == 0
                ),
                what="the store's sessions to end",
            )
            return conn.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'instances'"
            ).fetchone()


def test_a_sequence_of_steps_updates_its_instance_in_place() -> None:
    steps, seconds = 40, 0

    def run(client: perdure.Client) -> None:
        nonlocal seconds
        started = time.time()
        assert client.wait(client.start(chain, steps), timeout=60).output == steps
        seconds = math.ceil(time.time()) - math.floor(started)  # the seconds the steps began in

    updated, hot = instance_updates(run)
    # One update per turn but the first (the start's row goes in as that turn leaves it).
    # Those that change the status (the last: COMPLETED) and the first of each new second
    # write index entries; no other does.
    assert updated >= steps
    assert hot >= updated - 2 - seconds, (updated, hot, seconds)


def test_a_start_run_by_a_worker_writes_its_first_turn_with_the_row_or_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A start that runs its first turn in its own transaction (eager, or handed to an idle
    # worker) inserts a random id's row as that turn leaves it: the turn updates no row.
    # With an id of the caller's, the row goes in with the status the turn leaves: the
    # turn's update in the same transaction is then HOT. The last turn (COMPLETED) is not.
    # (A wait that lasts marks its instance watched, an update too: not here.)
    monkeypatch.setattr(perdure.client, "LOCAL_WAIT", 600.0)
    starts = 10

    def run(client: perdure.Client) -> None:
        for n in range(starts):
            assert client.wait(client.start(chain, 1, eager=n % 2 == 0), timeout=60).output == 1

    updated, hot = instance_updates(run)
    assert (updated, hot) == (starts, 0)

    def run_named(client: perdure.Client) -> None:
        for n in range(starts):
            started = client.start(chain, 1, eager=n % 2 == 0, instance_id=f"order-{n}")
            assert client.wait(started, timeout=60).output == 1

    updated, hot = instance_updates(run_named)
    assert (updated, hot) == (2 * starts, starts)
