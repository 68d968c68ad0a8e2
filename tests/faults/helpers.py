"""Helpers of the fault tests: run the workload, crash a worker process, compare outcomes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import perdure
from perdure.testing import violations
from tests.faults.workload import EXPECTED, app, start_all

ROOT = Path(__file__).resolve().parents[2]
APP_REF = "tests.faults.workload:app"


def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until ``predicate()`` is true (polling every 20 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:g} s")
        time.sleep(0.02)


def outcomes(client: perdure.Client, ids: list[str]) -> dict[str, tuple[str, Any]]:
    """Status and output of each instance."""
    return {iid: (client.get(iid).status.value, client.get(iid).output) for iid in ids}


def expected_outcomes() -> dict[str, tuple[str, Any]]:
    """What the fault-free run ends with."""
    return {iid: ("COMPLETED", output) for iid, output in EXPECTED.items()}


def finish_and_check(store: perdure.Store, ids: list[str], **worker_options: Any) -> None:
    """Run a fresh (fault-free) worker until every instance is terminal and nothing is left
    in flight, then check the outcomes and every invariant."""
    client = perdure.Client(store)
    options = {"poll_interval": 0.02, "lease_seconds": 0.5, **worker_options}
    with perdure.Worker(app, store, **options):
        for iid in ids:
            client.wait(iid, timeout=20)
        until(lambda: not violations(store, settled=True), 10, "a settled store")
    assert outcomes(client, ids) == expected_outcomes()
    found = violations(store, settled=True)
    assert not found, "\n".join(found)


def run_fault_worker(url: str, fault: str, *, lease: float = 0.5, timeout: float = 20.0) -> int:
    """Run ``python -m perdure.testing.fault_worker`` on the workload with ``fault``; return
    its exit status (``-SIGKILL`` when a kill fault fired)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    env.pop("PERDURE_FAULTS", None)
    command = [
        sys.executable,
        "-m",
        "perdure.testing.fault_worker",
        "--app",
        APP_REF,
        "--store",
        url,
        "--fault",
        fault,
        "--lease",
        str(lease),
        "--timeout",
        str(timeout),
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 30)
    if proc.returncode not in (-signal.SIGKILL, 0, 3):
        raise AssertionError(f"fault worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode


def start_workload(store: perdure.Store) -> list[str]:
    """Start the workload on ``store``; the instance ids."""
    return start_all(perdure.Client(store))
