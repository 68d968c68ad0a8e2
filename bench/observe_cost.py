"""What metrics and tracing cost: a workload with observers off, with metrics, and with
metrics and tracing, alternating runs in the same minutes (this VM's speed drifts by the
hour), with each round's ratios to "off".

    python -m bench.observe_cost W1 W4:k=500 --rounds 5
    python -m bench.observe_cost W1 --store postgres

A workload is ``NAME[:params]`` as for ``bench.ab``. Each run is a fresh process on a fresh
store; the order of the three settings rotates from round to round. For W1 and W4 it also
prints the CPU time of the workload's process per activity (``bench.cpu``), a steadier
measure of the cost than the wall time on a shared machine. ``all`` traces with the
OpenTelemetry SDK's batch span processor and an exporter that drops the spans (the cost of
making them, not of shipping them).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.__main__ import HEADLINE, fresh_store_url
from bench.ab import LOWER_IS_BETTER, ROOT, parse_workload, run_in

SETTINGS = ("off", "metrics", "all")


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print, per workload and setting, the median and the ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.observe_cost", description=__doc__)
    parser.add_argument("workloads", nargs="+", help="NAME[:key=value,...]")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perdure-observe-") as tmp:
        for spec in args.workloads:
            name, params = parse_workload(spec)
            key = HEADLINE[name]
            figures: dict[str, list[float]] = {s: [] for s in SETTINGS}
            cpu: dict[str, list[float]] = {s: [] for s in SETTINGS}  # the worker process's, per activity
            for round_ in range(args.rounds):
                shift = round_ % len(SETTINGS)
                for setting in SETTINGS[shift:] + SETTINGS[:shift]:
                    with fresh_store_url(args.store, Path(tmp)) as url:
                        result = run_in(ROOT, name, url, {**params, "observe": setting})
                    figures[setting].append(result[key])
                    if "cpu_process_s_ms_per_activity" in result:
                        cpu[setting].append(result["cpu_process_s_ms_per_activity"])
            better = "lower" if key in LOWER_IS_BETTER else "higher"
            line = [f"{spec:<16} {args.store:<8} {key} ({better} is better):"]
            for setting in SETTINGS:
                values = figures[setting]
                line.append(f"{setting} {statistics.median(values):,.3f} [{min(values):,.3f}-{max(values):,.3f}]")
                if setting != "off":
                    ratios = [v / o for v, o in zip(values, figures["off"], strict=True)]
                    line.append(f"({setting}/off per round: median {statistics.median(ratios):.3f})")
            print("  ".join(line), flush=True)
            if cpu["off"]:
                shown = ", ".join(f"{setting} {statistics.median(cpu[setting]):.3f}" for setting in SETTINGS)
                print(
                    f"{'':<16} {args.store:<8} CPU ms per activity of the worker process (medians): {shown}", flush=True
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
