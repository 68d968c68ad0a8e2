"""Side by side with DBOS Transact: the same workloads, alternating runs, per-pair ratios.

    python -m bench.vs_dbos --store postgres --pairs 5
    python -m bench.vs_dbos --store sqlite --pairs 5 W3 W4 --json bench/results/vs-dbos.json

perdure runs the workloads of ``bench.workloads`` (W1, W3, W4, with ordinary and local
activities; W3 with ``client.run``, DBOS's with ``start_workflow(...).get_result()``, and
also with eager starts, and with ``client.start`` then ``client.wait``); DBOS runs the same shapes from ``bench/dbos/workloads.py`` in its own virtual
environment, ``bench/dbos/.venv`` (created by ``bench/dbos/setup.sh`` on first use, or
give another interpreter with ``--dbos-python``). Every run is a fresh process on a fresh
store (a new PostgreSQL database, or a new SQLite file), dropped after it. In each pair
DBOS runs first in odd pairs and last in even ones, so both see the same minutes of this
machine. A pair's ratio is "× DBOS": above 1 when perdure is faster (perdure's throughput
over DBOS's, DBOS's latency over perdure's).

In every pair the runner also measures the physical limits of the machine (PostgreSQL:
a ``SELECT 1`` round trip and a single-connection insert + commit; SQLite: a one-row
insert + commit in WAL mode, as perdure uses it, and with a rollback journal, DBOS's
default, both with ``synchronous=FULL``), and the CPU per activity of all processes: the
run's own process (worker and client) and, on PostgreSQL, the server backends of its
database, read from ``/proc``. For W1 (on PostgreSQL), over the whole workload function,
less a run of the same with no workflows (its setup), the backends sampled while they
live; for W3 (per start → result) and W4, over the measured part.

PostgreSQL: $PERDURE_BENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.__main__ import fresh_store_url
from bench.ab import LOWER_IS_BETTER as AB_LOWER_IS_BETTER

ROOT = Path(__file__).resolve().parents[1]
DBOS_DIR = ROOT / "bench" / "dbos"
DBOS_PYTHON = DBOS_DIR / ".venv" / "bin" / "python"
DBOS = "DBOS"
FIGURES = {"W1": ["activities_per_s"], "W3": ["p50_ms", "p95_ms"], "W4": ["ms_per_activity"]}
"""The figures compared, by workload (the first is the one printed as the runs go)."""
UNITS = {"activities_per_s": "activities/s", "p50_ms": "ms, p50", "p95_ms": "ms, p95", "ms_per_activity": "ms per step"}
LOWER_IS_BETTER = AB_LOWER_IS_BETTER | {"p95_ms"}


@dataclass(frozen=True)
class Case:
    """One DBOS run and the perdure runs compared with it, in every pair."""

    label: str
    workload: str
    dbos: dict[str, Any]
    perdure: dict[str, dict[str, Any]]
    """perdure's variants: a label (``ordinary activities``, ``local activities``, with
    ``, eager start`` for W3) -> the workload's params."""


def _variants(params: dict[str, Any], *, eager: bool = False) -> dict[str, dict[str, Any]]:
    variants = {"ordinary activities": params, "local activities": {**params, "local": True}}
    if eager:  # DBOS runs a workflow in the process that starts it: so does an eager start
        variants |= {f"{label}, eager start": {**p, "eager": True} for label, p in variants.items()}
        # W3 runs each with client.run; this one with start, then wait (two calls).
        variants["ordinary activities, start then wait"] = {**params, "separate": True}
    return variants


CASES: dict[str, list[Case]] = {
    "W1": [
        Case(
            "W1 200 × 10, one start each",
            "W1",
            {"workflows": 200, "steps": 10},
            _variants({"orchestrations": 200, "steps": 10}),
        ),
        Case(
            "W1 200 × 10, batch start",
            "W1",
            {"workflows": 200, "steps": 10, "batch_start": True},
            _variants({"orchestrations": 200, "steps": 10, "batch_start": True}),
        ),
    ],
    "W3": [
        Case(
            "W3 start → result, one step", "W3", {"orchestrations": 100}, _variants({"orchestrations": 100}, eager=True)
        )
    ],
    "W4": [Case("W4 K = 200 sequential steps", "W4", {"k": 200}, _variants({"k": 200}))],
}


def summary(values: list[float]) -> tuple[float, float, float]:
    """Median, minimum and maximum."""
    return statistics.median(values), min(values), max(values)


def times_dbos(perdure: float, dbos: float, key: str) -> float:
    """How many times faster perdure is than DBOS on the figure ``key`` (above 1: faster)."""
    return dbos / perdure if key in LOWER_IS_BETTER else perdure / dbos


def pair_order(pair: int, perdure_sides: list[str]) -> list[str]:
    """The order of a pair's runs: DBOS first in odd pairs (counting from one), last in even ones."""
    return [DBOS, *perdure_sides] if pair % 2 == 0 else [*perdure_sides, DBOS]


def cpu_seconds_from_stat(stat: str) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``."""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def is_backend_of(cmdline: str, database: str) -> bool:
    """Whether a process title is a PostgreSQL backend serving ``database``
    (``postgres: [cluster:] user database host(port) activity``)."""
    return cmdline.startswith("postgres:") and database in cmdline.replace("\0", " ").split()


class BackendCpu:
    """The CPU time of the PostgreSQL backends serving one database, sampled from
    ``/proc`` every ``interval`` seconds while they live (a backend's time after the last
    sample before it exits is missed)."""

    def __init__(self, database: str, interval: float = 0.05) -> None:
        self.database = database
        self.interval = interval
        self._last: dict[str, float] = {}
        self._others: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid in self._others:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_text()
                if not cmdline.startswith("postgres"):
                    self._others.add(pid)
                elif is_backend_of(cmdline, self.database):
                    self._last[pid] = cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text())
            except OSError:  # the process ended between the listing and the read
                continue

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> BackendCpu:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        """CPU seconds of the backends seen so far, over their whole lives."""
        return sum(self._last.values())


def _child(argv: list[str], env: dict[str, str] | None, what: str) -> dict[str, Any]:
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_perdure(workload: str, url: str, params: dict[str, Any]) -> dict[str, Any]:
    """One run of perdure's ``bench.workloads`` workload in a fresh process, with ``cpu_s``."""
    code = (
        "import json, resource; from bench.workloads import WORKLOADS; "
        "r = resource.getrusage(resource.RUSAGE_SELF); "
        f"f = WORKLOADS[{workload!r}]({url!r}, **{params!r}); "
        "s = resource.getrusage(resource.RUSAGE_SELF); "
        "f['cpu_s'] = s.ru_utime + s.ru_stime - r.ru_utime - r.ru_stime; print(json.dumps(f))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    return _child([sys.executable, "-c", code], env, f"perdure {workload} {params}")


def run_dbos(python: Path, workload: str, url: str, params: dict[str, Any]) -> dict[str, Any]:
    """One run of ``bench/dbos/workloads.py`` in a fresh process of ``python``, with ``cpu_s``."""
    argv = [str(python), str(DBOS_DIR / "workloads.py"), workload, url, json.dumps(params)]
    return _child(argv, None, f"DBOS {workload} {params}")


def _median_ms(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def postgres_limits(url: str, repeat: int = 300) -> dict[str, float]:
    """A ``SELECT 1`` round trip and a one-row insert + commit on one connection, in ms."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS limits (id bigserial PRIMARY KEY, v int)")
        return {
            "pg_select1_ms": _median_ms(lambda: conn.execute("SELECT 1").fetchone(), repeat),
            "pg_insert_commit_ms": _median_ms(lambda: conn.execute("INSERT INTO limits (v) VALUES (1)"), repeat),
        }


def sqlite_limits(directory: Path, repeat: int = 300) -> dict[str, float]:
    """A one-row insert + commit with ``synchronous=FULL``: in WAL mode (perdure's) and with
    a rollback journal (DBOS's default), in ms."""
    figures = {}
    for mode in ("wal", "delete"):
        path = directory / f"limits-{mode}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute(f"PRAGMA journal_mode={mode}")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS limits (id INTEGER PRIMARY KEY, v INTEGER)")

        def commit(conn: sqlite3.Connection = conn) -> None:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO limits (v) VALUES (1)")
            conn.execute("COMMIT")

        figures[f"sqlite_commit_{mode}_ms"] = _median_ms(commit, repeat)
        conn.close()
        path.unlink()
    return figures


LIMIT_LABELS = {
    "pg_select1_ms": "PostgreSQL `SELECT 1` round trip",
    "pg_insert_commit_ms": "PostgreSQL insert + commit, one connection",
    "sqlite_commit_wal_ms": "SQLite insert + commit, WAL, `synchronous=FULL` (perdure's mode)",
    "sqlite_commit_delete_ms": "SQLite insert + commit, rollback journal, `synchronous=FULL` (DBOS's default)",
}


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.3g}"


def _cell(values: list[float]) -> str:
    median, low, high = summary(values)
    return f"{_fmt(median)} [{_fmt(low)}–{_fmt(high)}]"


def _cpu_ms(case: Case, runs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Each run's CPU per activity in ms: its process's, and its server backends'. W1: the
    whole run's less its setup's (a run with no workflows: its backends come and go as it
    runs, so they are sampled while they live); W3 and W4: their measured part's (one
    connection at a time, read as the part starts and ends; in W3 an activity is a start
    → result)."""
    if case.workload != "W1":
        return [r["cpu_process_s_ms_per_activity"] for r in runs], [r["cpu_server_s_ms_per_activity"] for r in runs]
    activities = case.dbos["workflows"] * case.dbos["steps"]
    return (
        [1000 * (r["cpu_s"] - r["setup_cpu_s"]) / activities for r in runs],
        [1000 * (r["server_cpu_s"] - r["setup_server_cpu_s"]) / activities for r in runs],
    )


def _has_cpu(case: Case, run: dict[str, Any]) -> bool:
    return ("server_cpu_s" if case.workload == "W1" else "cpu_process_s_ms_per_activity") in run


def _cpu_cell(case: Case, runs: list[dict[str, Any]]) -> str:
    process, server = _cpu_ms(case, runs)
    total = [p + s for p, s in zip(process, server, strict=True)]
    return f"{_fmt(statistics.median(process))} + {_fmt(statistics.median(server))} = {_cell(total)}"


def _cpu_ratios(case: Case, perdure: list[dict[str, Any]], dbos: list[dict[str, Any]]) -> list[float]:
    """Per pair: DBOS's total CPU per activity over perdure's."""
    totals = [[p + s for p, s in zip(*_cpu_ms(case, runs), strict=True)] for runs in (perdure, dbos)]
    return [d / p for p, d in zip(*totals, strict=True)]


def report(store: str, results: dict[str, dict[str, list[dict[str, Any]]]], limits: list[dict[str, float]]) -> str:
    """The Markdown tables of a run: figures, CPU per activity (W1 on PostgreSQL; W3 and W4), limits."""
    cases = {case.label: case for group in CASES.values() for case in group}
    lines = ["| workload | figure | perdure | DBOS | × DBOS per pair |", "|---|---|---|---|---|"]
    cpu = [
        "",
        "| CPU per activity, ms (lower is better) | perdure: process + server = total "
        "| DBOS: process + server = total | × DBOS per pair (total) |",
        "|---|---|---|---|",
    ]
    for label, sides in results.items():
        case = cases[label]
        dbos_runs = sides[DBOS]
        for variant in case.perdure:
            runs = sides[variant]
            row = f"{label}, perdure {variant}"
            for key in FIGURES[case.workload]:
                better = "lower" if key in LOWER_IS_BETTER else "higher"
                ratios = [times_dbos(p[key], d[key], key) for p, d in zip(runs, dbos_runs, strict=True)]
                lines.append(
                    f"| {row} | {UNITS[key]} ({better} is better) | {_cell([r[key] for r in runs])} "
                    f"| {_cell([r[key] for r in dbos_runs])} | **{_cell(ratios)}** |"
                )
            if _has_cpu(case, runs[0]) and _has_cpu(case, dbos_runs[0]):
                cpu.append(
                    f"| {row} | {_cpu_cell(case, runs)} | {_cpu_cell(case, dbos_runs)} "
                    f"| **{_cell(_cpu_ratios(case, runs, dbos_runs))}** |"
                )
    if len(cpu) > 4:
        lines += cpu
    if limits:
        lines += ["", f"| physical limit ({store}), median of 300 | ms, per pair: median [range] |", "|---|---|"]
        lines += [f"| {LIMIT_LABELS[key]} | {_cell([pair[key] for pair in limits])} |" for key in limits[0]]
    return "\n".join(lines)


def _ensure_dbos(python: Path) -> Path:
    if python.exists():
        return python
    if python != DBOS_PYTHON:
        raise SystemExit(f"--dbos-python {python}: no such interpreter")
    print(f"creating {DBOS_DIR / '.venv'} with DBOS Transact (bench/dbos/setup.sh) ...", flush=True)
    subprocess.run(["bash", str(DBOS_DIR / "setup.sh")], check=True)
    return python


def _context(store: str, pairs: int, python: Path) -> str:
    dbos_version = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('dbos'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, store {store}, {pairs} pairs, perdure {commit or '?'}, "
        f"DBOS {dbos_version or '?'}, {os.cpu_count()} CPUs, load average {_load()}"
    )


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: workloads (default W1 W3 W4), ``--store``, ``--pairs``, ``--json``,
    ``--dbos-python``, ``--dbos-sqlite-wal``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.vs_dbos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workloads", nargs="*", default=list(CASES), help="W1, W3, W4 (default: all three)")
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="write every run's figures here")
    parser.add_argument("--dbos-python", type=Path, default=DBOS_PYTHON, help="an interpreter with dbos installed")
    parser.add_argument(
        "--dbos-sqlite-wal",
        action="store_true",
        help="SQLite: put DBOS's file in WAL mode, as perdure's (DBOS's default is a rollback journal)",
    )
    args = parser.parse_args(argv)
    args.workloads = [w.upper() for w in args.workloads]
    unknown = [w for w in args.workloads if w not in CASES]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}: choose from {', '.join(CASES)}")
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    return args


@dataclass(frozen=True)
class Setting:
    """What every run of one invocation shares."""

    store: str
    tmp: Path
    dbos_python: Path
    dbos_sqlite_wal: bool = False
    """Put DBOS's SQLite file in WAL mode before it opens it (its default: a rollback journal)."""


def _run(side: str, case: Case, setting: Setting, cpu: bool, empty: bool = False) -> dict[str, Any]:
    with fresh_store_url(setting.store, setting.tmp) as url:
        probe = BackendCpu(url.rsplit("/", 1)[1]) if cpu else None
        with probe or contextlib.nullcontext():
            if side == DBOS:
                if setting.dbos_sqlite_wal and setting.store == "sqlite":
                    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
                        conn.execute("PRAGMA journal_mode=WAL")  # kept in the file
                params = {**case.dbos, "workflows": 0} if empty else case.dbos
                figures = run_dbos(setting.dbos_python, case.workload, url, params)
            else:
                params = {**case.perdure[side], "orchestrations": 0} if empty else case.perdure[side]
                figures = run_perdure(case.workload, url, params)
    if probe:
        figures["server_cpu_s"] = probe.seconds
    return figures


def run_side(side: str, case: Case, setting: Setting) -> dict[str, Any]:
    """One run of one side of ``case``, on a fresh store dropped after it. W1 on PostgreSQL
    also gets the CPU time of the server backends of the run's database (``server_cpu_s``),
    and the CPU times of the same run with no workflows (``setup_cpu_s``,
    ``setup_server_cpu_s``: opening the store, migrations, starting and stopping the worker),
    which the CPU per activity leaves out."""
    measure_cpu = setting.store == "postgres" and case.workload == "W1"
    figures = _run(side, case, setting, cpu=measure_cpu)
    if measure_cpu:
        setup = _run(side, case, setting, cpu=True, empty=True)
        figures["setup_cpu_s"], figures["setup_server_cpu_s"] = setup["cpu_s"], setup["server_cpu_s"]
    return figures


def limits_of(store: str, tmp: Path) -> dict[str, float]:
    """The physical limits of ``store`` on this machine, now (on a fresh store, dropped after)."""
    if store == "sqlite":
        return sqlite_limits(tmp)
    with fresh_store_url(store, tmp) as url:
        return postgres_limits(url)


def main(argv: list[str] | None = None) -> int:
    """Alternate the runs, print the tables (and optionally write every figure as JSON)."""
    args = parse_args(argv)
    python = _ensure_dbos(args.dbos_python)
    context = _context(args.store, args.pairs, python)
    if args.dbos_sqlite_wal:
        context += ", DBOS's SQLite file in WAL mode"
    print(context, flush=True)
    cases = [case for name in args.workloads for case in CASES[name]]
    results = {case.label: {side: [] for side in (*case.perdure, DBOS)} for case in cases}
    limits: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="perdure-vs-dbos-") as tmp:
        setting = Setting(args.store, Path(tmp), python, args.dbos_sqlite_wal)
        for pair in range(args.pairs):
            limits.append(limits_of(args.store, Path(tmp)))
            for case in cases:
                for side in pair_order(pair, list(case.perdure)):
                    figures = run_side(side, case, setting)
                    results[case.label][side].append(figures)
                    key = FIGURES[case.workload][0]
                    print(f"pair {pair + 1}: {case.label}, {side}: {key}={figures[key]:,.3f}", flush=True)
    context += f"; at {datetime.now(UTC):%H:%M} UTC, load average {_load()}"
    print(f"\n{context}\n\n{report(args.store, results, limits)}", flush=True)
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps({"context": context, "results": results, "limits": limits}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
