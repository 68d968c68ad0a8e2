"""A sequential step (W4), or a start → result (W3), on a store crowded by the rest of a
fleet, against an empty store.

    python -m bench.crowded --store postgres --rows 20000 --pairs 3
    python -m bench.crowded --store sqlite --rows 1000,5000,20000
    python -m bench.crowded --store postgres --workload W3

A crowded store holds ``rows`` finished instances and ``rows`` running instances whose
leases another worker holds (their activities running), each with a message and an
activity task due in the future: what a store of a busy fleet holds besides the W4
instance. The rows are written by SQL (shared by both stores), then the store is analyzed,
as a store in service is. Pairs alternate the empty store and each crowded size; each
figure is W4's milliseconds per step (W3: its p50 in milliseconds), and the ratio crowded
over empty (1.0: the crowd costs nothing).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

import perdure
from bench.__main__ import fresh_store_url, run_once

# One statement per table, in the dialect both stores share; :n is the number of rows.
_CROWD = (
    "INSERT INTO instances (instance_id, name, status, created_at, last_updated_at, run_id)"
    " SELECT 'done-' || g, 'chain', 'COMPLETED', g, g, 'r' FROM {series}"
    " UNION ALL SELECT 'held-' || g, 'chain', 'RUNNING', g, g, 'r' FROM {series}",
    "INSERT INTO orchestration_leases (instance_id, owner, token, expires_at, lease_seconds, locked_at)"
    " SELECT 'held-' || g, 'other-worker', 't', 1e12, 30, 0 FROM {series}",
    "INSERT INTO orchestration_messages (instance_id, kind, event, enqueued_at, visible_at)"
    " SELECT 'held-' || g, 'EventRaised', '{{}}', 0, 1e12 FROM {series}",
    "INSERT INTO activity_tasks (instance_id, execution_id, task_id, name, enqueued_at, visible_at)"
    " SELECT 'held-' || g, 1, 1, 'inc', 0, 1e12 FROM {series}",
)


def crowd(kind: str, url: str, rows: int, *, analyzed: int | None = None) -> None:
    """Migrate the store at ``url`` and write the crowd of ``rows`` into it, then analyze it.
    With ``analyzed``, the store is analyzed once it holds the crowd of that many, and the
    rest is written after: statistics of a store that was small when last analyzed."""
    perdure.open_store(url).close()
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for first, last, analyze in _parts(rows, analyzed):
                series = (
                    f"(WITH RECURSIVE s(g) AS (SELECT {first} UNION ALL SELECT g + 1 FROM s WHERE g < {last}) "
                    "SELECT g FROM s)"
                )
                for statement in _CROWD:
                    conn.execute(statement.format(series=series))
                if analyze:
                    conn.execute("ANALYZE")
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for first, last, analyze in _parts(rows, analyzed):
            for statement in _CROWD:
                series = f"generate_series({first}, {last}) AS s (g)"
                conn.execute(statement.format(series=series).replace("%", "%%"))
            if analyze:
                conn.execute("VACUUM ANALYZE")


def _parts(rows: int, analyzed: int | None) -> list[tuple[int, int, bool]]:
    """The ranges of the crowd's rows to write, each with whether the store is analyzed
    after it: all of them, or those up to ``analyzed``, then the rest."""
    if analyzed is None or analyzed >= rows:
        return [(1, rows, True)]
    return [(1, analyzed, True), (analyzed + 1, rows, False)]


def main(argv: list[str] | None = None) -> int:
    """Alternate W4 on an empty store and on crowded ones; print the figures and ratios."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.crowded", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", default="20000", help="crowd sizes, comma-separated")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workload", choices=["W4", "W3"], default="W4")
    parser.add_argument("--k", type=int, default=1000, help="W4's activities, W3's orchestrations")
    args = parser.parse_args(argv)
    params, figure = (
        ({"k": args.k}, "ms_per_activity") if args.workload == "W4" else ({"orchestrations": args.k}, "p50_ms")
    )
    sizes = [0, *(int(n) for n in args.rows.split(","))]
    figures: dict[int, list[float]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="perdure-crowded-") as tmp:
        for pair in range(args.pairs):
            for rows in sizes if pair % 2 == 0 else reversed(sizes):
                with fresh_store_url(args.store, Path(tmp)) as url:
                    crowd(args.store, url, rows)
                    figures[rows].append(run_once(args.workload, url, params)[figure])
            print(f"pair {pair + 1}: " + ", ".join(f"{n:,} rows {figures[n][-1]:.3f} ms" for n in sizes), flush=True)
    empty = statistics.median(figures[0])
    unit = "ms per step" if args.workload == "W4" else "p50 ms"
    print(f"{args.workload} {unit} on {args.store}, median of {args.pairs} (crowded / empty):")
    for rows in sizes:
        median = statistics.median(figures[rows])
        print(f"  {rows:>7,} rows  {median:.3f} ms  {median / empty:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
