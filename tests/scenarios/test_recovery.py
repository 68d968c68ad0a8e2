"""Scenarios: a stopped or killed worker's instances are finished by another worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import perdure
from perdure.core.history import ActivityCompleted
from tests.scenarios.crash_app import app as crash_app
from tests.scenarios.crash_app import pipeline

ROOT = Path(__file__).resolve().parents[2]

app = perdure.App()


@app.orchestration
async def calls_late_activity(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity("late_activity", x)


# What a later deploy brings: the orchestration and the activity the first workers lack.
later = perdure.App()


@later.orchestration
async def late_flow(ctx: perdure.OrchestrationContext, x: int) -> int:
    return x * 2


@later.activity
def late_activity(x: int) -> int:
    return x + 1


def _until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_worker_stopped_mid_orchestration_is_finished_by_a_new_worker(store, client, tmp_path):
    args = {"steps": 6, "marker_dir": str(tmp_path)}
    iid = client.start(pipeline, args)
    first = perdure.Worker(crash_app, store, poll_interval=0.05)
    first.start()
    _until(lambda: len(list(tmp_path.glob("started-*"))) >= 2)
    first.stop()
    assert not client.get(iid).is_terminal or client.get(iid).output is not None
    with perdure.Worker(crash_app, store, poll_interval=0.05):
        state = client.wait(iid, timeout=15)
    assert state.output == [x * 10 for x in range(6)]
    completed = [e.task_id for e in client.get(iid, history=True).history if isinstance(e, ActivityCompleted)]
    assert len(completed) == len(set(completed)) == 6


def test_worker_process_killed_mid_activity_is_taken_over_after_lease_expiry(store_url, tmp_path):
    url = store_url
    store = perdure.open_store(url)
    client = perdure.Client(store)
    args = {"steps": 3, "marker_dir": str(tmp_path)}
    iid = client.start(pipeline, args, instance_id="crash-1")
    env = {**os.environ, "PERDURE_TEST_HANG": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perdure.cli",
            "--store",
            url,
            "worker",
            "--app",
            "tests.scenarios.crash_app:app",
            "--lease",
            "1",
            "--poll-interval",
            "0.05",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _until(lambda: any(tmp_path.glob(f"started-0-{proc.pid}")))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert client.get(iid).status is perdure.OrchestrationStatus.RUNNING
    with perdure.Worker(crash_app, store, poll_interval=0.05, lease_seconds=1):
        state = client.wait(iid, timeout=20)
    undisturbed = [x * 10 for x in range(3)]
    assert state.status is perdure.OrchestrationStatus.COMPLETED
    assert state.output == undisturbed
    history = client.get(iid, history=True).history
    completed = [e.task_id for e in history if isinstance(e, ActivityCompleted)]
    assert len(completed) == len(set(completed)) == 3  # the killed attempt left no trace
    store.close()


def test_an_instance_no_worker_can_run_waits_visibly_and_runs_once_one_can(store, client):
    """Absence is not failure (issue 16, item 6): work for a name no live worker registers
    waits, diagnosed as ``no_worker``, however long the deploy gap; it runs once a worker
    that has it starts. Pinned: the worker used to fail such instances after a grace."""
    flow = client.start("late_flow", 20)
    caller = client.start(calls_late_activity, 1)
    with perdure.Worker(app, store, poll_interval=0.05, heartbeat_interval=0.05):
        _until(lambda: store.activity_tasks(caller) != [])
        time.sleep(0.5)  # ten heartbeats: long past any grace a worker could give
        assert client.get(flow).status is perdure.OrchestrationStatus.PENDING
        assert client.get(caller).status is perdure.OrchestrationStatus.RUNNING
        assert client.diagnose(flow).verdict == "no_worker"
        assert "late_flow" in client.diagnose(flow).top.summary
        assert client.diagnose(caller).verdict == "no_worker"
        assert "late_activity" in client.diagnose(caller).top.summary
        with perdure.Worker(later, store, poll_interval=0.05):
            assert client.wait(flow, timeout=10).output == 40
            assert client.wait(caller, timeout=10).output == 2
