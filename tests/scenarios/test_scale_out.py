"""Scale-out on PostgreSQL: several worker processes share one database.

Exactly-once history is checked from the histories themselves: if two workers had ever held
one instance at the same time and both committed, some task id would be scheduled or
completed twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import perdure
from perdure.core.history import (
    ActivityCompleted,
    ActivityScheduled,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    TimerCreated,
    TimerFired,
)
from tests.scenarios.scale_app import expected, job

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_url():
    from tests import pgserver

    with pgserver.fresh_database() as url:
        yield url


def _workers(url: str, count: int, lease: float) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perdure.cli",
                "--store",
                url,
                "worker",
                "--app",
                "tests.scenarios.scale_app:app",
                "--lease",
                str(lease),
                "--poll-interval",
                "0.2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def _assert_exactly_once(client: perdure.Client, ids: list[str], n_of: dict[str, int]) -> None:
    for iid in ids:
        state = client.wait(iid, timeout=120)
        assert state.status is perdure.OrchestrationStatus.COMPLETED, (iid, state.failure)
        assert state.output == expected(n_of[iid])
        history = client.get(iid, history=True).history
        for kind in (
            ActivityScheduled,
            ActivityCompleted,
            TimerCreated,
            TimerFired,
            SubOrchestrationCreated,
            SubOrchestrationCompleted,
        ):
            per_task = Counter(e.task_id for e in history if isinstance(e, kind))
            assert all(c == 1 for c in per_task.values()), (iid, kind.__name__, per_task)
        assert sum(isinstance(e, ActivityCompleted) for e in history) == 2
        assert sum(isinstance(e, SubOrchestrationCompleted) for e in history) == 1


def test_four_worker_processes_run_500_orchestrations_exactly_once(pg_url):
    store = perdure.open_store(pg_url)
    client = perdure.Client(store)
    procs = _workers(pg_url, 4, lease=30)
    try:
        n_of = {client.start(job, n, instance_id=f"job-{n}"): n for n in range(500)}
        _assert_exactly_once(client, list(n_of), n_of)
        children = client.list(name="child", limit=1000).items
        assert len(children) == 500 and all(c.status.value == "COMPLETED" for c in children)
    finally:
        _stop(procs)
        store.close()
    assert all(p.returncode == 0 for p in procs), [p.stderr.read().decode()[-2000:] for p in procs]


def test_killed_worker_process_instances_are_finished_by_the_others(pg_url):
    store = perdure.open_store(pg_url)
    client = perdure.Client(store)
    procs = _workers(pg_url, 3, lease=2)
    try:
        n_of = {client.start(job, n, instance_id=f"k-{n}"): n for n in range(150)}
        deadline = time.monotonic() + 60
        while client.list(status="COMPLETED", name="job", limit=1000).items.__len__() < 20:
            assert time.monotonic() < deadline, "no progress before the kill"
            time.sleep(0.05)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        _assert_exactly_once(client, list(n_of), n_of)
    finally:
        _stop(procs)
        store.close()
