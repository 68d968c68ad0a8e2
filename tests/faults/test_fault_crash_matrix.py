"""Fault injection: a worker process killed at every write point loses nothing.

The workload (``tests/faults/workload.py``: sequences, fan-out, a timer, events, a child,
a retried activity, continue-as-new) runs in a real worker subprocess
(``python -m perdure.testing.fault_worker``) whose store is wrapped in a
:class:`~perdure.testing.FaultyStore` that ``SIGKILL``\\ s the process at one write point:
before a write reaches the store, inside its transaction just before COMMIT, or after the
commit before the worker sees the result. Each of the worker's write points is crashed in
turn (the N-th arrival, N chosen from a fault-free probe run so the crash falls mid-way).

Right after the crash the store must already be consistent (invariant 8: every live
instance has a source for what it awaits). Then a fresh worker finishes the work and every
instance must end exactly as in a fault-free run, no history may hold two completions for a
task, and every message must have been applied, discarded with a record or dead-lettered
(:mod:`perdure.testing.invariants`).

Scope: the write a worker makes while working, ``run_round`` (which records activity
outcomes, locks instances, commits turns and locks tasks in one transaction), at its three
phases, each crashed early, midway and late in the run (the 1st, the 0.3N-th and the
0.6N-th of the probe's N rounds), on SQLite and PostgreSQL alike (18 runs, about a second
each). ``heartbeat`` writes no workflow state, ``renew_*`` and ``abandon_*`` only run for
long activities and at shutdown, and the split methods (``lock_orchestrations``,
``commit_turns``, ...) only for work nobody else can run; they and the client's writes are
covered in-process by ``test_fault_raise_matrix.py``.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

import perdure
from perdure.testing import FaultyStore, assert_invariants, write_points
from tests.faults.helpers import (
    expected_outcomes,
    finish_and_check,
    outcomes,
    run_fault_worker,
    start_workload,
)
from tests.faults.workload import app

CRASH_POINTS = write_points(["run_round"])
WHEN = {"early": 0.0, "midway": 0.3, "late": 0.6}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Counter[str]:
    """A fault-free run of the workload (in process, on SQLite): its outcomes are the
    reference, and how often it reaches each write point guides where to crash."""
    store = perdure.open_store(f"sqlite:///{tmp_path_factory.mktemp('probe') / 'p.db'}")
    try:
        counting = FaultyStore(store)
        ids = start_workload(store)
        client = perdure.Client(store)
        with perdure.Worker(app, counting, poll_interval=0.02):  # type: ignore[arg-type]
            for iid in ids:
                client.wait(iid, timeout=20)
        assert outcomes(client, ids) == expected_outcomes()
        return counting.hits
    finally:
        store.close()


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_worker_killed_at_a_write_point_loses_nothing(store_url, point, when, probe):
    """Kill the worker process at ``point`` (``when`` in the run), check the store, restart,
    compare."""
    nth = max(1, int(probe[point] * WHEN[when]))
    store = perdure.open_store(store_url)
    try:
        ids = start_workload(store)
        status = run_fault_worker(store_url, f"{point}@{nth}=kill")
        assert status == -signal.SIGKILL, f"the fault at {point}@{nth} never fired"
        assert_invariants(store)  # the crash left a consistent store
        assert any(not perdure.Client(store).get(i).is_terminal for i in ids)
        finish_and_check(store, ids)
    finally:
        store.close()
