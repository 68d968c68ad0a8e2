"""Where a PostgreSQL worker round's time goes: W4 (one orchestration of ``k`` sequential
ordinary activities) with every round's wire traffic traced and its CPU counted.

    python -m bench.pg_round_profile                 # k=300, a fresh database
    python -m bench.pg_round_profile --k 500 --profile 25   # and the 25 costliest functions

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). For
each ``Store.run_round`` it turns on libpq's protocol trace (``PGconn.trace``) for the
pooled connection the round uses, and reports per round (the medians over the rounds that
committed a turn, one per W4 step):

- statements: ``Bind`` messages sent (one per statement executed, one per row of an
  ``executemany``; ``BEGIN`` and ``COMMIT`` count);
- round trips: times the client waited for the server (a run of messages sent followed by
  a run received);
- syncs: ``Sync`` messages (each closes a pipeline segment);
- server wait: the time from the last message of each sent run to the first of its answer
  (the server's work plus the loopback), summed;
- round wall and round CPU (``thread_time`` of the thread that runs the round, inside
  ``run_round``), and the rounds' CPU per step (the round runner, turns included, on
  whichever thread runs it: the dispatch loop's, or an activity's);
- step: the W4 wall time per activity;

and the server-side prepared statements of the last round's connection with how many times
PostgreSQL ran each with its generic plan and how many times it planned it anew (custom).

With ``--profile N`` the round runner is run under cProfile (CPU time) and its ``N``
costliest functions (by own time) are printed. The trace itself costs the client time, so
the step and CPU figures of a traced run are a little above an untraced one's (``--no-trace``
measures without it).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

import perdure
from bench.__main__ import fresh_store_url
from bench.workloads import app, chain
from perdure.runtime.rounds import RoundRunner
from perdure.store.postgres.store import PostgresStore


def parse_trace(path: Path) -> dict[str, float]:
    """Count one round's messages in a libpq trace file (lines ``timestamp F|B length Type ...``)."""
    binds = syncs = trips = 0
    wait = 0.0
    last_sent: float | None = None
    direction = ""
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        stamp, way, kind = parts[0], parts[1], parts[3].split(" ", 1)[0]
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if way == "F":
            binds += kind == "Bind"
            syncs += kind == "Sync"
            last_sent = at
        elif way == "B" and direction == "F" and last_sent is not None:
            trips += 1
            wait += at - last_sent
        direction = way
    return {"statements": binds, "round_trips": trips, "syncs": syncs, "server_wait_ms": 1000 * wait}


PLANS = """
SELECT generic_plans, custom_plans, left(regexp_replace(statement, '\\s+', ' ', 'g'), 70) AS statement
FROM pg_prepared_statements ORDER BY custom_plans DESC, generic_plans DESC
"""


class Recorder:
    """Traces and times every ``run_round`` of the process."""

    def __init__(self, trace: bool, profile: bool) -> None:
        self.trace = trace
        self.rounds: list[dict[str, Any]] = []
        self.other: list[Path] = []  # traces of the connections used outside rounds
        self.round_cpu = 0.0
        self.profiler = cProfile.Profile(time.thread_time) if profile else None
        self.local = threading.local()
        self.tmp = Path(tempfile.mkdtemp(prefix="perdure-trace-"))

    @contextmanager
    def patched(self):
        """Patch the pool's connections (traced), the store's round (timed) and the round
        runner (its CPU, and the profiler)."""
        original_round, original_run = PostgresStore.run_round, RoundRunner.run
        original_connection = ConnectionPool.connection
        recorder = self

        @contextmanager
        def connection(pool: ConnectionPool, *args: Any, **kwargs: Any):
            with original_connection(pool, *args, **kwargs) as conn:
                path = None
                if recorder.trace:
                    path = recorder.tmp / f"use-{time.monotonic_ns()}-{threading.get_ident()}.trace"
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    conn.pgconn.trace(fd)
                    if getattr(recorder.local, "in_round", False):
                        recorder.local.file = path
                    else:
                        recorder.other.append(path)
                try:
                    yield conn
                finally:
                    if path is not None:
                        conn.pgconn.untrace()
                        os.close(fd)

        def run_round(store: PostgresStore, request: Any) -> Any:
            recorder.local.file, recorder.local.in_round = None, True
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                result = original_round(store, request)
            finally:
                recorder.local.in_round = False
            recorder.rounds.append(
                {
                    "wall_ms": 1000 * (time.perf_counter() - started),
                    "cpu_ms": 1000 * (time.thread_time() - cpu),
                    "commits": len(request.commits),
                    "trace": recorder.local.file,
                }
            )
            return result

        def run(runner: RoundRunner, *args: Any, **kwargs: Any) -> Any:
            cpu = time.thread_time()
            if recorder.profiler is not None:
                recorder.profiler.enable()
            try:
                return original_run(runner, *args, **kwargs)
            finally:
                if recorder.profiler is not None:
                    recorder.profiler.disable()
                recorder.round_cpu += time.thread_time() - cpu

        ConnectionPool.connection = connection  # type: ignore[assignment]
        PostgresStore.run_round = run_round  # type: ignore[method-assign]
        RoundRunner.run = run  # type: ignore[method-assign]
        try:
            yield
        finally:
            ConnectionPool.connection = original_connection  # type: ignore[method-assign]
            PostgresStore.run_round = original_round  # type: ignore[method-assign]
            RoundRunner.run = original_run  # type: ignore[method-assign]


def prepared_plans(store: PostgresStore) -> list[dict[str, Any]]:
    """The prepared statements of the pool's connection that ran the most rounds."""
    pool = store._db.pool
    best: list[dict[str, Any]] = []
    with ExitStack() as stack:
        for _ in range(pool.get_stats().get("pool_size", 1)):
            conn = stack.enter_context(pool.connection(timeout=1))
            plans = conn.execute(PLANS).fetchall()
            if sum(p["generic_plans"] + p["custom_plans"] for p in plans) > sum(
                p["generic_plans"] + p["custom_plans"] for p in best
            ):
                best = plans
    return best


def summarise(paths: list[Path]) -> dict[str, float]:
    """The message counts of several traces, summed."""
    total: dict[str, float] = {}
    for path in paths:
        for key, value in parse_trace(path).items():
            total[key] = total.get(key, 0) + value
    return total


def main(argv: list[str] | None = None) -> int:
    """Run W4 (or W3) once, traced; print the per-step figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.pg_round_profile", description=__doc__)
    parser.add_argument("--k", type=int, default=300, help="W4's activities")
    parser.add_argument("--w3", type=int, default=0, metavar="N", help="run W3 (N orchestrations) instead of W4")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--no-trace", action="store_true")
    parser.add_argument("--sort", default="tottime", help="pstats order of --profile (tottime, cumulative)")
    args = parser.parse_args(argv)
    recorder = Recorder(trace=not args.no_trace, profile=args.profile > 0)
    steps = args.w3 or args.k
    with fresh_store_url("postgres") as url:
        store = perdure.open_store(url)
        client = perdure.Client(store)
        with perdure.Worker(app, store):
            client.wait(client.start(chain, 1), timeout=60)  # warm-up
            with recorder.patched():
                started = time.perf_counter()
                if args.w3:
                    latencies = []
                    for _ in range(args.w3):
                        begun = time.perf_counter()
                        assert client.wait(client.start(chain, 1), timeout=60).output == 1
                        latencies.append(time.perf_counter() - begun)
                else:
                    state = client.wait(client.start(chain, args.k), timeout=600)
                    assert state.output == args.k, state
                wall = time.perf_counter() - started
        plans = prepared_plans(store)
        store.close()
    if args.w3:
        print(f"W3 x{args.w3}: p50 {1000 * statistics.median(latencies):.3f} ms; {len(recorder.rounds)} rounds")
        print(f"round runner CPU per orchestration: {1000 * recorder.round_cpu / steps:.3f} ms")
        if recorder.trace:
            rounds = summarise([r["trace"] for r in recorder.rounds if r["trace"] is not None])
            other = summarise(recorder.other)
            print("per orchestration, in worker rounds / elsewhere (client, housekeeping):")
            for key in rounds:
                print(f"  {key:15} {rounds[key] / steps:8.3f} / {other.get(key, 0) / steps:8.3f}")
    else:
        print(f"W4 k={args.k}: {1000 * wall / args.k:.3f} ms per step; {len(recorder.rounds)} rounds")
        print(f"round runner CPU per step: {1000 * recorder.round_cpu / args.k:.3f} ms")
        figures: dict[str, list[float]] = {"wall_ms": [], "cpu_ms": []}
        for r in (r for r in recorder.rounds if r["commits"]):
            figures["wall_ms"].append(r["wall_ms"])
            figures["cpu_ms"].append(r["cpu_ms"])
            if r["trace"] is not None:
                for key, value in parse_trace(r["trace"]).items():
                    figures.setdefault(key, []).append(value)
        print("per round with a turn (median; min-max):")
        for key, values in figures.items():
            print(f"  {key:15} {statistics.median(values):8.3f}  ({min(values):.3f}-{max(values):.3f})")
    print("prepared statements of the connection that ran the most rounds (generic / custom plans):")
    for plan in plans:
        print(f"  {plan['generic_plans']:6} {plan['custom_plans']:6}  {plan['statement']}")
    if recorder.profiler is not None:
        stats = pstats.Stats(recorder.profiler)
        stats.sort_stats(args.sort).print_stats(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
