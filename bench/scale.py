"""W1 on a store that already holds many terminal instances, against W1 on an empty store.

    python -m bench.scale --store sqlite --terminal 100000 --pairs 3
    python -m bench.scale --store postgres --terminal 100000 --pairs 3 --plans bench/plans-postgres.txt

The full store is made once (``--terminal`` completed instances of a one-activity
orchestration: a worker runs a thousand, SQL copies their rows), then copied for every run (SQLite: the file; PostgreSQL:
``CREATE DATABASE ... TEMPLATE``), so each run starts from the same state. Pairs alternate
which store goes first; the ratio is full over empty (W1's activities per second: 1.0 means
no cost). With ``--plans FILE`` the statements of one W1 run on the full store are
captured and their query plans written to FILE (``EXPLAIN QUERY PLAN`` on SQLite, the
server's ``auto_explain`` on PostgreSQL), each followed by whether a plan reads a whole
table of perdure's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import perdure
from bench.__main__ import _fresh_store, _postgres_admin_url, run_once
from bench.workloads import app, chain


def fill(kind: str, url: str, terminal: int, seed: int = 1000) -> float:
    """Put ``terminal`` completed one-activity orchestrations in the store at ``url``; return
    the seconds it took. A worker runs ``seed`` of them; SQL then copies their instance and
    history rows under new ids (and run tokens), each copy an hour older than the last, so
    the store holds as many rows as ``terminal`` real runs would leave."""
    started = time.perf_counter()
    store = perdure.open_store(url)
    client = perdure.Client(store)
    with perdure.Worker(app, store):
        client.start_many(chain, [1] * min(seed, terminal))
        while client.count(perdure.InstanceFilter(status=["PENDING", "RUNNING"])):
            time.sleep(0.2)
    store.close()
    copies = -(-terminal // seed) - 1
    if copies > 0:
        _copy_rows(kind, url, copies)
    return time.perf_counter() - started


def _copy_rows(kind: str, url: str, copies: int) -> None:
    """Copy every history and instances row ``copies`` times, copy ``n`` under the id and
    run token suffixed ``-n`` (in the row and in its events), ``n`` hours older (SQL shared
    by both stores)."""
    n = "'-' || CAST(k.n AS TEXT)"
    series = f"WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < {copies})"
    statements = [  # history first: its copies take the run token from the original instance row
        "INSERT INTO history (instance_id, execution_id, sequence, event) "
        f"{series} SELECT h.instance_id || {n}, h.execution_id, h.sequence, REPLACE(h.event, i.run_id, i.run_id || {n}) "
        "FROM history AS h JOIN instances AS i ON i.instance_id = h.instance_id, k",
    ]
    copied = {
        "instance_id": f"instance_id || {n}",
        "run_id": f"run_id || {n}",
        "created_at": "created_at - 3600 * k.n",
        "last_updated_at": "last_updated_at - 3600 * k.n",
    }
    if kind == "sqlite":
        import sqlite3

        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        names = [r[1] for r in conn.execute("PRAGMA table_info(instances)")]
    else:
        import psycopg

        conn = psycopg.connect(url)
        query = (  # a generated column is computed, not copied
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'instances' AND is_generated = 'NEVER' ORDER BY ordinal_position"
        )
        names = [r[0] for r in conn.execute(query)]
    select = ", ".join(copied.get(c, c) for c in names)
    statements.append(f"INSERT INTO instances ({', '.join(names)}) {series} SELECT {select} FROM instances, k")
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


class Copies:
    """Fresh copies of one filled store, one per run."""

    def __init__(self, kind: str, tmp: Path, template_url: str) -> None:
        self.kind, self.tmp, self.template_url = kind, tmp, template_url

    def make(self) -> tuple[str, Any]:
        """A new copy: its URL and a function that drops it (or None)."""
        if self.kind == "sqlite":
            source = Path(self.template_url.removeprefix("sqlite:///"))
            target = self.tmp / f"full-{uuid.uuid4().hex[:8]}.db"
            shutil.copyfile(source, target)
            return f"sqlite:///{target}", None
        import psycopg

        admin = _postgres_admin_url()
        template = self.template_url.rsplit("/", 1)[1]
        name = f"perdure_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        return f"{admin.rsplit('/', 1)[0]}/{name}", drop


def checkpoint(kind: str, url: str) -> None:
    """Make the filled store a plain copyable file (SQLite) or analysed template (PostgreSQL)."""
    if kind == "sqlite":
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("ANALYZE")
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> int:
    """Fill once, then alternate W1 on an empty and on a full copy; print the ratios."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--terminal", type=int, default=100_000, help="terminal instances in the full store")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--plans", default=None, metavar="FILE", help="write the plans of W1's statements here")
    args = parser.parse_args(argv)
    params = {"batch_start": True}
    with tempfile.TemporaryDirectory(prefix="perdure-scale-") as tmp:
        template_url, drop_template = _fresh_store(args.store, Path(tmp))
        try:
            seconds = fill(args.store, template_url, args.terminal)
            checkpoint(args.store, template_url)
            print(f"filled {args.terminal:,} terminal instances in {seconds:.0f} s", flush=True)
            copies = Copies(args.store, Path(tmp), template_url)
            if args.plans:
                from bench.plans import write_plans

                url, drop = copies.make()
                try:
                    write_plans(args.store, url, Path(args.plans))
                finally:
                    if drop:
                        drop()
                print(f"plans written to {args.plans}", flush=True)
            ratios = []
            for pair in range(args.pairs):
                figures: dict[str, float] = {}
                for which in ("empty", "full") if pair % 2 == 0 else ("full", "empty"):
                    url, drop = _fresh_store(args.store, Path(tmp)) if which == "empty" else copies.make()
                    try:
                        figures[which] = run_once("W1", url, params)["activities_per_s"]
                    finally:
                        if drop:
                            drop()
                ratios.append(figures["full"] / figures["empty"])
                print(
                    f"pair {pair + 1}: empty {figures['empty']:,.0f}/s, full {figures['full']:,.0f}/s,"
                    f" ratio {ratios[-1]:.3f}",
                    flush=True,
                )
            if ratios:
                print(f"median ratio full/empty: {statistics.median(ratios):.3f}")
        finally:
            if drop_template:
                drop_template()
    return 0


if __name__ == "__main__":
    sys.exit(main())
