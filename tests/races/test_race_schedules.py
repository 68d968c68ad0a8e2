"""Randomized schedules: several workers in one process, leases that expire, duplicated
deliveries, delayed messages and crashed workers; the invariants hold for every schedule.

Hypothesis draws each schedule (a list of steps, see ``tests/races/schedules.py``) and
plays it on a fresh store with a fake clock: two real workers, driven step by step,
lock instances and hold them, run and commit turns late, lock, run and complete
activities, crash (losing what they hold), abandon work; the clock jumps (timers,
backoff, lease expiry); completions already applied are delivered again; the external
event comes at any point. After every step: no instance waits on something that will
never come, and a terminal instance never changes. At the end (the store drained by the
same workers): every instance completed with the fault-free output, no history holds two
completions for a task, and every message was applied, discarded with a record or
dead-lettered.

1,000 schedules on SQLite in memory (``PERDURE_SCHEDULES`` overrides; 25-40 s), 25 on
PostgreSQL, each in a fresh database (``PERDURE_PG_SCHEDULES``; about 8 s).
On failure Hypothesis prints the shrunk schedule and, with ``print_blob``, the
``@reproduce_failure`` line that replays it; ``--hypothesis-seed=N`` replays a whole run.

Verified (each guard removed in turn, then restored):

- messages for an ended execution delivered to the current one (the stale-execution sort in
  the SQLite store's ``_lock_instance``): found within the 1,000 schedules, a completion of
  execution 1 duplicated after the continue-as-new completes execution 2's task:
  "'renewing' ended COMPLETED with 10";
- both fences of ``commit_turn`` (lease token and "consumed messages still queued"): a
  stale worker's turn is committed over the new holder's: "'mixed' execution 1: 2
  ExecutionStarted events", "task 1 scheduled 2 times".

Either fence alone keeps every schedule correct (a stale turn consumes messages the new
holder already consumed, or holds a dead token), so removing only one is not detected here;
``test_seed003_terminate_vs_completion.py`` pins the token check on its own.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from perdure.core.history import MessageDiscarded
from perdure.store.sqlite import SQLiteStore
from perdure.testing import FakeClock
from perdure.testing.invariants import all_instances
from tests.races.schedules import OPS, WORKERS, play

SCHEDULES = int(os.environ.get("PERDURE_SCHEDULES", "1000"))

steps = st.lists(
    st.tuples(
        st.sampled_from(range(len(OPS))),  # uniform, where integers() favours small values
        st.sampled_from(range(WORKERS)),
        st.integers(0, 7),
    ),
    min_size=15,
    max_size=50,
)
schedule_settings = settings(
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(schedule_settings, max_examples=SCHEDULES)
@given(schedule=steps)
def test_race_schedules_keep_the_invariants_on_sqlite(schedule):
    """Every schedule on SQLite (in memory) keeps the invariants."""
    clock = FakeClock()
    store = SQLiteStore(":memory:", clock=clock)
    try:
        run = play(store, clock, schedule)
        describe(run)
    finally:
        store.close()


def describe(run) -> None:
    """Label the schedule for ``--hypothesis-show-statistics`` (what races it hit)."""
    totals: dict[str, int] = {}
    for worker in run.workers:
        for key, value in worker.stats().items():
            totals[key] = totals.get(key, 0) + value
    for key in ("turns_lease_lost", "activities_lease_lost", "activities_discarded"):
        if totals.get(key):
            event(key)
    discards = {d.reason for d in run.store.discarded_messages(limit=1000)}
    for record in all_instances(run.store):
        for r in run.store.get_history(record.instance_id):
            if isinstance(r.event, MessageDiscarded):
                discards.add(f"{r.event.reason} (in history)")
    for reason in sorted(discards):
        event(f"discarded: {reason}")
    if any(w.crashes > 1 for w in run.workers):
        event("a worker crashed")


PG_SCHEDULES = int(os.environ.get("PERDURE_PG_SCHEDULES", "25"))


@settings(schedule_settings, max_examples=PG_SCHEDULES)
@given(schedule=steps)
def test_race_schedules_keep_the_invariants_on_postgres(schedule):
    """A smaller sample of schedules on PostgreSQL, each in a fresh database."""
    from perdure.store.postgres import PostgresStore
    from tests import pgserver

    clock = FakeClock()
    with pgserver.fresh_database() as url:
        store = PostgresStore(url, clock=clock, notify=False, pool_size=2)
        try:
            play(store, clock, schedule)
        finally:
            store.close()
