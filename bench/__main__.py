"""Benchmark runner: each run in a fresh process on a fresh store; the median of several runs.

    python -m bench W1 W2 W3 W4          # SQLite (WAL, synchronous=FULL), 3 runs each
                                         # (W1, W3 and W4 also with local activities,
                                         # W3 also with eager starts, and with
                                         # start then wait instead of client.run)
    python -m bench W1 W5 --store postgres --runs 5
    python -m bench all --json bench/results/latest.json

PostgreSQL: $PERDURE_BENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test; each
run gets a fresh database created from that server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLANS: dict[str, list[dict[str, Any]]] = {
    "W1": [{"batch_start": False}, {"batch_start": True}, {"batch_start": True, "local": True}],
    "W2": [{}],
    "W3": [{}, {"local": True}, {"eager": True}, {"local": True, "eager": True}, {"separate": True}],
    "W4": [*({"k": k} for k in (100, 500, 1000, 2000)), *({"k": k, "local": True} for k in (100, 500, 1000, 2000))],
    "W5": [{"processes": 1}, {"processes": 2}, {"processes": 4}],
}
HEADLINE = {"W1": "activities_per_s", "W2": "wall_s", "W3": "p50_ms", "W4": "ms_per_activity", "W5": "activities_per_s"}


def _postgres_admin_url() -> str:
    return os.environ.get("PERDURE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _fresh_store(kind: str, tmp: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}", None
    import psycopg

    admin = _postgres_admin_url()
    name = f"perdure_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


@contextmanager
def fresh_store_url(kind: str, folder: Path | None = None) -> Iterator[str]:
    """The URL of a fresh store of ``kind`` for the block: a new SQLite file in ``folder``
    (default: a temporary directory of its own), or a new PostgreSQL database; dropped after
    it."""
    with ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url, drop = _fresh_store(kind, folder)
        if drop is not None:
            stack.callback(drop)
        yield url


def w3_options(
    prog: str, description: str | None, orchestrations: int, argv: list[str] | None, *, run: bool = False
) -> argparse.Namespace:
    """The command line of a tool that runs W3 in its own process: ``--store``,
    ``--orchestrations`` (default ``orchestrations``), ``--eager`` and, with ``run``,
    ``--run`` (``client.run`` instead of ``client.start`` then ``client.wait``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--orchestrations", type=int, default=orchestrations)
    parser.add_argument("--eager", action="store_true", help="start(..., eager=True)")
    if run:
        parser.add_argument("--run", action="store_true", help="client.run, not client.start then client.wait")
    return parser.parse_args(argv)


def run_once(workload: str, url: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one workload in a fresh process and return its figures."""
    code = (
        "import json, sys; from bench.workloads import WORKLOADS; "
        f"print(json.dumps(WORKLOADS[{workload!r}]({url!r}, **{params!r})))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{workload} {params} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the plans, print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workloads", nargs="+", help="W1..W5 or 'all'")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", dest="json_path", default=None, help="write results here")
    args = parser.parse_args(argv)
    names = list(PLANS) if args.workloads == ["all"] else [w.upper() for w in args.workloads]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="perdure-bench-") as tmp:
        for name in names:
            if name not in PLANS:
                parser.error(f"unknown workload {name}")
            kind = "postgres" if name == "W5" else args.store
            for params in PLANS[name]:
                runs = []
                for _ in range(args.runs):
                    with fresh_store_url(kind, Path(tmp)) as url:
                        runs.append(run_once(name, url, params))
                median = {
                    k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))
                }
                results.append({"workload": name, "store": kind, "params": params, "median": median, "runs": runs})
                shown = ", ".join(f"{k}={v:,.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in median.items())
                print(
                    f"{name:<3} {kind:<8} {json.dumps(params):<28} {HEADLINE[name]}={median[HEADLINE[name]]:,.3f}   ({shown})",
                    flush=True,
                )
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "runs": args.runs,
        }
        Path(args.json_path).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
