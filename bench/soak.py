"""Crash-and-restart soak: worker processes SIGKILLed at random under a mixed workload.

    python -m bench.soak --store sqlite --seconds 60 --workers 3
    python -m bench.soak --store postgres --seconds 60 --workers 3 --seed 7
    python -m bench.soak --store sqlite:///soak.db --seconds 10     # any store URL

For ``--seconds`` the driver keeps about ``--in-flight`` instances of ``bench.soak_app``'s
``soak_flow`` running (activities, local activities, a fan-out, timers, events it raises
through the client, children, continue-as-new, activities that succeed on a retry) on
``--workers`` worker processes (``perdure worker``) sharing the store, and SIGKILLs one of
them every 0.2–1.5 s (all of them one time in ten), starting new ones in their place at
once. Then the killing and the starting stop, and the workers finish undisturbed. The run passes when, within
``--drain-timeout`` seconds:

- every instance is COMPLETED with exactly the output ``expected_output`` computes from
  its input;
- no execution's history (read through ``Client.history``) completes a task twice;
- nothing is left live (the diagnosis of each live instance is printed otherwise), and
  the store settles (``perdure.testing.violations``: no message left, every task
  accounted for).

It prints a summary and exits 0 if it passed, 1 if not. ``--seed`` makes the kills and the
event timings reproducible (the interleavings inside the workers are not). PostgreSQL:
``--store postgres`` creates a fresh database on ``$PERDURE_BENCH_POSTGRES_URL`` (else
postgresql://postgres@127.0.0.1:5432/test) and drops it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import perdure
from bench import soak_app
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    TimerFired,
)
from perdure.diagnosis import render_diagnosis
from perdure.testing import violations

ROOT = Path(__file__).resolve().parents[1]
APP_REF = "bench.soak_app:app"
LIVE = ["PENDING", "RUNNING", "SUSPENDED"]
COMPLETIONS = (ActivityCompleted, ActivityFailed, TimerFired, SubOrchestrationCompleted, SubOrchestrationFailed)
KILL_EVERY = (0.2, 1.5)  # seconds between two kills, uniformly at random
ALL_AT_ONCE = 0.1  # the share of kills that kill every worker at once
EVENT_DELAY = (0.0, 1.0)  # seconds between an instance's start (or its previous event) and an event


@dataclass
class SoakReport:
    """What a soak did and what it found; ``problems`` is empty when it passed."""

    store: str
    seed: int
    workers: int
    instances: int = 0
    kills: int = 0
    restarts: int = 0
    chaos_s: float = 0.0
    drain_s: float = 0.0
    executions: int = 0
    activities_executed: int = 0
    activities_completed: int = 0
    activity_failures: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def summary(self) -> str:
        """The result in a few lines."""
        verdict = "PASS" if self.ok else f"FAIL ({len(self.problems)} problems)"
        return "\n".join(
            [
                f"soak {verdict}: store {self.store}, seed {self.seed}, {self.workers} worker processes",
                f"  {self.instances} instances started ({self.executions} executions, children included)",
                f"  {self.kills} SIGKILLs, {self.restarts} restarts in {self.chaos_s:.1f} s; "
                f"drained in {self.drain_s:.1f} s",
                f"  activities: {self.activities_executed} executions, {self.activities_completed} completions and "
                f"{self.activity_failures} failed attempts recorded",
            ]
        )


class Fleet:
    """The worker processes: start, SIGKILL and replace them; notice ones that died alone."""

    def __init__(self, url: str, count: int, log_dir: Path, lease: float, activity_log: Path) -> None:
        self.url = url
        self.lease = lease
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            soak_app.LOG_ENV: str(activity_log),
        }
        self.spawned = 0
        self.logs: dict[int, Path] = {}  # pid -> the worker's output
        self.procs: list[subprocess.Popen[bytes]] = [self._spawn() for _ in range(count)]
        self.kills = 0
        self.restarts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.spawned += 1
        command = [
            sys.executable,
            "-m",
            "perdure.cli",
            "--store",
            self.url,
            "worker",
            "--app",
            APP_REF,
            "--lease",
            str(self.lease),
            "--poll-interval",
            "0.05",
            "--shutdown-timeout",
            "1",
            "--log-level",
            "warning",
        ]
        path = self.log_dir / f"worker-{self.spawned}.log"
        with open(path, "wb") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.logs[proc.pid] = path
        return proc

    def kill(self, rng: random.Random) -> None:
        """SIGKILL a random worker, or one time in ten all of them (a host crash), and
        start new ones in their place."""
        victims = range(len(self.procs)) if rng.random() < ALL_AT_ONCE else [rng.randrange(len(self.procs))]
        for i in victims:
            self.procs[i].send_signal(signal.SIGKILL)
            self.procs[i].wait()
            self.kills += 1
        for i in victims:
            self.procs[i] = self._spawn()
            self.restarts += 1

    def replace_dead(self) -> list[str]:
        """Start a new worker for each one that exited without being killed; what happened."""
        found = []
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                output = self.logs[proc.pid].read_text(errors="replace")[-3000:]
                found.append(f"worker process {proc.pid} exited by itself with status {proc.returncode}:\n{output}")
                self.procs[i] = self._spawn()
                self.restarts += 1
        return found

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Driver:
    """Starts instances, raises their events on a random schedule, tracks the live ones."""

    def __init__(self, client: perdure.Client, rng: random.Random) -> None:
        self.client = client
        self.rng = rng
        self.started: dict[str, int] = {}  # instance id -> n
        self.live: set[str] = set()
        self.events: list[tuple[float, str, int, int]] = []  # (due, instance id, n, k), k ascending per id

    def start(self, count: int) -> None:
        """Start ``count`` instances and schedule their events (one per execution, in order)."""
        now = time.monotonic()
        for _ in range(count):
            n = len(self.started)
            iid = self.client.start(soak_app.soak_flow, soak_app.first_input(n), instance_id=f"soak-{n}")
            self.started[iid] = n
            self.live.add(iid)
            due = now
            for k in range(soak_app.rounds(n)):
                due += self.rng.uniform(*EVENT_DELAY)
                self.events.append((due, iid, n, k))
        self.events.sort(key=lambda e: (e[0], e[3]))

    def raise_due(self, everything: bool = False) -> None:
        """Raise the events that are due (all of them if ``everything``), each instance's in
        order of ``k``."""
        now = time.monotonic()
        due = [e for e in self.events if everything or e[0] <= now]
        self.events = [e for e in self.events if not (everything or e[0] <= now)]
        for _, iid, n, k in sorted(due, key=lambda e: (e[1], e[3])):
            self.client.raise_event(iid, "go", soak_app.event_data(n, k))

    def refresh(self) -> None:
        """Forget the instances that ended."""
        self.live = {iid for iid in self.live if not self.client.get(iid).is_terminal}


def _all_instances(client: perdure.Client, **filters: Any) -> list[perdure.InstanceState]:
    out: list[perdure.InstanceState] = []
    cursor = None
    while True:
        page = client.list(limit=1000, cursor=cursor, **filters)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def check_outputs(client: perdure.Client, started: dict[str, int]) -> list[str]:
    """Every started instance COMPLETED with its expected output."""
    problems = []
    for iid, n in started.items():
        state = client.get(iid)
        expected = soak_app.expected_output(n)
        if state.status is not perdure.OrchestrationStatus.COMPLETED or state.output != expected:
            problem = (
                f"{iid}: {state.status.value}, output {state.output!r}, failure {state.failure!r}; "
                f"expected COMPLETED with {expected!r}"
            )
            if state.is_terminal:  # a live one is diagnosed by ``stuck``
                problem += "\n" + render_diagnosis(client.diagnose(iid))
            problems.append(problem)
    return problems


def check_histories(client: perdure.Client, report: SoakReport) -> list[str]:
    """No execution of any instance (children included) completes a task twice; counts the
    executions and the activity outcomes recorded."""
    problems = []
    for state in _all_instances(client):
        for execution in range(1, state.execution_id + 1):
            events = client.history(state.instance_id, execution_id=execution)
            report.executions += bool(events)
            report.activities_completed += sum(isinstance(e, ActivityCompleted) for e in events)
            report.activity_failures += sum(isinstance(e, ActivityFailed) for e in events)
            done = Counter(e.task_id for e in events if isinstance(e, COMPLETIONS))
            for task, times in sorted(done.items()):
                if times > 1:
                    kinds = [type(e).__name__ for e in events if isinstance(e, COMPLETIONS) and e.task_id == task]
                    problems.append(
                        f"{state.instance_id} execution {execution}: task {task} completed {times} times ({kinds})"
                    )
    return problems


def stuck(client: perdure.Client) -> list[str]:
    """The diagnosis of every instance still live."""
    return [
        f"{state.instance_id} is still {state.status.value}:\n{render_diagnosis(client.diagnose(state.instance_id))}"
        for state in _all_instances(client, status=LIVE)
    ]


def _until(predicate: Callable[[], bool], deadline: float) -> bool:
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(
    url: str,
    *,
    seconds: float = 60.0,
    workers: int = 3,
    seed: int | None = None,
    in_flight: int = 40,
    lease: float = 1.0,
    drain_timeout: float = 120.0,
    log: Callable[[str], None] = print,
) -> SoakReport:
    """Run the soak on the (empty) store at ``url``; the report of what it found."""
    seed = random.randrange(1_000_000) if seed is None else seed
    rng = random.Random(seed)
    report = SoakReport(store=url, seed=seed, workers=workers)
    store = perdure.open_store(url)
    client = perdure.Client(store, app=soak_app.app)
    with tempfile.TemporaryDirectory(prefix="perdure-soak-") as tmp:
        activity_log = Path(tmp) / "activities.log"
        activity_log.touch()
        fleet = Fleet(url, workers, Path(tmp), lease, activity_log)
        try:
            driver = Driver(client, rng)
            started = time.monotonic()
            next_kill = started + rng.uniform(*KILL_EVERY)
            next_refresh = started
            while (now := time.monotonic()) < started + seconds:
                if now >= next_refresh:
                    driver.refresh()
                    driver.start(max(0, in_flight - len(driver.live)))
                    next_refresh = now + 0.25
                driver.raise_due()
                if now >= next_kill:
                    fleet.kill(rng)
                    next_kill = now + rng.uniform(*KILL_EVERY)
                report.problems += fleet.replace_dead()
                time.sleep(0.02)
            report.chaos_s = time.monotonic() - started
            report.kills, report.instances = fleet.kills, len(driver.started)
            log(f"soak: {report.instances} instances started, {fleet.kills} kills; draining")

            draining = time.monotonic()
            deadline = draining + drain_timeout
            driver.raise_due(everything=True)
            finished = _until(lambda: not client.list(status=LIVE, limit=1).items, deadline)
            report.drain_s = time.monotonic() - draining
            report.problems += fleet.replace_dead()
            if not finished:
                report.problems += stuck(client)
            report.problems += check_outputs(client, driver.started)
            report.problems += check_histories(client, report)
            if not _until(lambda: not violations(store, settled=True), time.monotonic() + 15):
                report.problems += violations(store, settled=True)
            report.restarts = fleet.restarts
            report.activities_executed = len(activity_log.read_text().splitlines())
        finally:
            fleet.stop()
            store.close()
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the soak on a fresh store, print the summary."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", default="sqlite", help="sqlite, postgres, or a store URL (default sqlite)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long workers are killed (default 60)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, printed)")
    parser.add_argument("--in-flight", type=int, default=40, help="instances kept running (default 40)")
    parser.add_argument("--lease", type=float, default=1.0, help="workers' lease seconds (default 1)")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to finish after (default 120)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.seconds <= 0:
        parser.error("--workers must be at least 1 and --seconds positive")

    from bench.__main__ import fresh_store_url

    with tempfile.TemporaryDirectory(prefix="perdure-soak-store-") as tmp:
        fresh = args.store in ("sqlite", "postgres")
        with fresh_store_url(args.store, Path(tmp)) if fresh else contextlib.nullcontext(args.store) as url:
            report = run(
                url,
                seconds=args.seconds,
                workers=args.workers,
                seed=args.seed,
                in_flight=args.in_flight,
                lease=args.lease,
                drain_timeout=args.drain_timeout,
            )
    for problem in report.problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
