"""The store's size while one instance continues as new 10,000 times.

    python -m bench.can_size                              # SQLite, keep_executions 5 and None
    python -m bench.can_size --store postgres
    python -m bench.can_size --iterations 1000 --keep 5   # one retention setting only

One orchestration, ``eternal``, calls one local activity per execution and continues as new
until it has done so ``--iterations`` times; one in-process worker runs it on a fresh store
opened with ``keep_executions`` set to each ``--keep`` value (``none``: keep everything).

Before the start and every 10 % of the way it reads the store's size: on SQLite the bytes
of the database's pages in use (``page_count - freelist_count``, WAL included); on
PostgreSQL the sum of ``pg_total_relation_size`` over perdure's tables right after a
``VACUUM`` that the benchmark runs, as autovacuum would (the space of deleted rows becomes
reusable; ``--no-vacuum`` leaves it out). At the end it prints, through the client, how many executions still have a
history and how many events those hold, and the size at rest: the SQLite file after a
``wal_checkpoint(TRUNCATE)``, or the PostgreSQL tables after a ``VACUUM FULL`` (only
their live rows).

PostgreSQL: ``--store postgres`` creates a fresh database on
``$PERDURE_BENCH_POSTGRES_URL`` (else postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import perdure

app = perdure.App()


@app.activity(local=True)
def tick(i: int) -> int:
    """The iteration's work: count one."""
    return i + 1


@app.orchestration
async def eternal(ctx: perdure.OrchestrationContext, state: dict[str, int]) -> int:
    """One iteration per execution; continues as new ``stop`` times, then returns."""
    i = await ctx.call_activity(tick, state["i"])
    if i <= state["stop"]:
        ctx.continue_as_new({"i": i, "stop": state["stop"]})
    return i


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def size_in_use(url: str, vacuum: bool = True) -> int:
    """Bytes the store's data takes now: SQLite's pages in use, or PostgreSQL's tables with
    their indexes and TOAST, after a ``VACUUM`` if ``vacuum`` (which makes the space of
    deleted rows reusable, as autovacuum does)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url)) as conn:
            pages, free, size = (
                conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
            )
        return (pages - free) * size
    return _postgres_size(url, "VACUUM" if vacuum else None)


def size_at_rest(url: str) -> int:
    """The SQLite file's size after a WAL checkpoint, or PostgreSQL's tables after
    ``VACUUM FULL`` (rewritten to hold only their live rows)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Path(_sqlite_path(url)).stat().st_size
    return _postgres_size(url, "VACUUM FULL")


def _postgres_size(url: str, vacuum: str | None) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace"
            )
        ]
        if vacuum:
            conn.execute(f"{vacuum} {', '.join(tables)}")
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(relname::regclass)) FROM unnest(%s::text[]) AS relname", (tables,)
        ).fetchone()
    return int(row[0])


def run(
    url: str, iterations: int = 10_000, keep: int | None = 5, samples: int = 10, vacuum: bool = True
) -> dict[str, Any]:
    """Run ``eternal`` for ``iterations`` continue-as-new on the fresh store at ``url``
    opened with ``keep_executions=keep``; the sizes seen on the way (PostgreSQL: after a
    ``VACUUM`` if ``vacuum``) and at the end."""
    store = perdure.open_store(url, keep_executions=keep)
    client = perdure.Client(store, app=app)
    every = max(1, iterations // samples)
    sizes = [(0, size_in_use(url, vacuum))]
    started = time.perf_counter()
    with perdure.Worker(app, store):
        iid = client.start(eternal, {"i": 0, "stop": iterations}, instance_id="eternal")
        next_sample = every
        while not (state := client.get(iid)).is_terminal:
            if state.execution_id >= next_sample:
                sizes.append((state.execution_id - 1, size_in_use(url, vacuum)))
                next_sample = state.execution_id + every
            time.sleep(0.01)
    wall = time.perf_counter() - started
    assert (state.status, state.output, state.execution_id) == ("COMPLETED", iterations + 1, iterations + 1), state
    kept = [len(client.history(iid, execution_id=e)) for e in range(1, state.execution_id + 1)]
    store.close()
    if sizes[-1][0] != iterations:
        sizes.append((iterations, size_in_use(url, vacuum)))
    return {
        "keep_executions": keep,
        "iterations": iterations,
        "wall_s": wall,
        "executions_kept": sum(n > 0 for n in kept),
        "events_kept": sum(kept),
        "sizes": sizes,
        "size_at_rest": size_at_rest(url),
    }


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run each retention setting on a fresh store, print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.can_size", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--iterations", type=int, default=10_000, help="continue-as-new per run (default 10000)")
    parser.add_argument(
        "--keep",
        action="append",
        default=None,
        help="keep_executions: an integer or none (repeatable; default 5 and none)",
    )
    parser.add_argument(
        "--no-vacuum", dest="vacuum", action="store_false", help="PostgreSQL: measure without running VACUUM"
    )
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    keeps: list[int | None] = []
    for value in args.keep or ["5", "none"]:
        if value.lower() != "none" and not value.isdigit():
            parser.error(f"--keep takes an integer >= 0 or none, got {value!r}")
        keeps.append(None if value.lower() == "none" else int(value))

    from bench.__main__ import fresh_store_url

    with tempfile.TemporaryDirectory(prefix="perdure-can-size-") as tmp:
        for keep in keeps:
            with fresh_store_url(args.store, Path(tmp)) as url:
                figures = run(url, args.iterations, keep, vacuum=args.vacuum)
            print(
                f"{args.store}, keep_executions={keep}: {figures['iterations']:,} continue-as-new in "
                f"{figures['wall_s']:.1f} s; {figures['executions_kept']:,} executions kept with "
                f"{figures['events_kept']:,} history events; at rest {_kib(figures['size_at_rest'])}"
            )
            print("  in use after " + ", ".join(f"{n:,}: {_kib(b)}" for n, b in figures["sizes"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
