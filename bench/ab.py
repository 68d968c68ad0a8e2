"""Side by side: the same workloads on two checkouts of perdure, alternating runs in the
same minutes (this VM's speed drifts by the hour), with the ratio of each pair.

    python -m bench.ab --base ../perdure-before W1:local W3:local W4:k=1000,local --pairs 5
    python -m bench.ab --base ../perdure-before W4:k=200 --store postgres
    python -m bench.ab --base ../perdure-before W1:batch_start --store postgres --cpu

A workload is ``NAME[:params]``, the params ``key=value`` (``local`` alone means
``local=True``) separated by commas, as ``bench.workloads`` takes them. The workloads are this
checkout's ``bench.workloads``, run on each checkout's ``src/``. Each run is a fresh
process on a fresh store; ``base`` runs first in odd pairs and second in even ones. The
ratio is this checkout's figure over the base's, for the workload's headline figure
(higher is better for throughputs, lower for latencies: the table says which). With
``--cpu`` it also reports the CPU milliseconds per activity of every process of a run: the
workload's own (workers, client) and, on PostgreSQL, the server's backends (``bench.cpu``;
W1, W3 and W4 report them); with ``--wal``, on PostgreSQL, the bytes of WAL written per
activity (``bench.wal``; the same workloads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.__main__ import HEADLINE, fresh_store_url

ROOT = Path(__file__).resolve().parents[1]
LOWER_IS_BETTER = {"wall_s", "p50_ms", "ms_per_activity"}


def parse_workload(spec: str) -> tuple[str, dict[str, Any]]:
    """``"W4:k=1000,local"`` -> ``("W4", {"k": 1000, "local": True})``."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        params[key] = json.loads(value) if eq else True
    return name.upper(), params


def run_in(checkout: Path, workload: str, url: str, params: dict[str, Any]) -> dict[str, Any]:
    """One run of ``workload`` on the perdure of ``checkout`` (its ``src/``), in a fresh
    process; the workload itself is this checkout's, so both sides run the same one."""
    code = (
        "import json; from bench.workloads import WORKLOADS; "
        f"print(json.dumps(WORKLOADS[{workload!r}]({url!r}, **{params!r})))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{checkout / 'src'}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{workload} {params} in {checkout} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Alternate the runs, print each workload's medians and pair ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("workloads", nargs="+", help="NAME[:key=value,...]")
    parser.add_argument("--base", required=True, type=Path, help="the other checkout (its bench/ and src/)")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="also report CPU ms per activity, every process counted")
    parser.add_argument("--wal", action="store_true", help="PostgreSQL: also report the WAL bytes per activity")
    args = parser.parse_args(argv)
    checkouts = {"base": args.base.resolve(), "this": ROOT}
    with tempfile.TemporaryDirectory(prefix="perdure-ab-") as tmp:
        for spec in args.workloads:
            name, params = parse_workload(spec)
            key = HEADLINE[name]
            figures: dict[str, list[float]] = {"base": [], "this": []}
            cpu: dict[str, list[tuple[float, float]]] = {"base": [], "this": []}
            wal: dict[str, list[float]] = {"base": [], "this": []}
            for pair in range(args.pairs):
                order = ("base", "this") if pair % 2 == 0 else ("this", "base")
                for side in order:
                    with fresh_store_url(args.store, Path(tmp)) as url:
                        result = run_in(checkouts[side], name, url, params)
                    figures[side].append(result[key])
                    if "cpu_process_s_ms_per_activity" in result:
                        cpu[side].append(
                            (result["cpu_process_s_ms_per_activity"], result["cpu_server_s_ms_per_activity"])
                        )
                    if "wal_bytes_per_activity" in result:
                        wal[side].append(result["wal_bytes_per_activity"])
            ratios = [t / b for t, b in zip(figures["this"], figures["base"], strict=True)]
            better = "lower" if key in LOWER_IS_BETTER else "higher"
            print(
                f"{spec:<24} {args.store:<8} {key} ({better} is better): base median "
                f"{statistics.median(figures['base']):,.3f} [{min(figures['base']):,.3f}-{max(figures['base']):,.3f}]"
                f"  this median {statistics.median(figures['this']):,.3f} "
                f"[{min(figures['this']):,.3f}-{max(figures['this']):,.3f}]"
                f"  this/base per pair: median {statistics.median(ratios):.3f} "
                f"[{min(ratios):.3f}-{max(ratios):.3f}]",
                flush=True,
            )
            if args.wal and wal["this"] and wal["base"]:
                walled = [t / b for t, b in zip(wal["this"], wal["base"], strict=True)]
                print(
                    f"{'':<24} WAL bytes per activity (medians): base {statistics.median(wal['base']):,.0f}, "
                    f"this {statistics.median(wal['this']):,.0f}; this/base per pair: median "
                    f"{statistics.median(walled):.3f} [{min(walled):.3f}-{max(walled):.3f}]",
                    flush=True,
                )
            if args.cpu and cpu["this"]:  # W1, W3 and W4 report them
                for side in ("base", "this"):
                    process = statistics.median(p for p, _ in cpu[side])
                    server = statistics.median(s for _, s in cpu[side])
                    print(
                        f"{'':<24} {side:<4} CPU ms per activity (medians): process {process:.3f}, "
                        f"server {server:.3f}, all {process + server:.3f}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
