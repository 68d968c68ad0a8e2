"""What the PostgreSQL driver costs the client: CPU per transaction and per statement.

    python -m bench.driver_cost                        # 2,000 transactions of each shape
    python -m bench.driver_cost --transactions 5000 --statements 20

Each transaction has the shape of a worker round: in pipeline mode, ``BEGIN``,
``n`` statements, ``COMMIT`` and a single Sync, every statement prepared on the server
and every answer read. It is sent three ways, each on its own connection to the server of
$PERDURE_BENCH_POSTGRES_URL (else postgresql://postgres@127.0.0.1:5432/test):

- **psycopg**: ``Connection.execute`` inside ``Connection.pipeline()``
  (``prepare_threshold=0``, dict rows, named parameters);
- **perdure**: the store's own :class:`perdure.store.postgres.wire.Pipeline` (libpq with
  psycopg's Transformer adapting parameters and rows), as a write transaction sends them;
- **libpq**: the same messages through ``psycopg.pq`` (``PGconn.send_query_prepared`` and
  ``get_result``), with no Python layer above libpq.

It reports the dispatching thread's CPU time (``time.thread_time``) per transaction with
no statement between ``BEGIN`` and ``COMMIT`` and with ``n``, hence per statement, and
the wall time of a transaction with ``n``. The statement is trivial (two parameters, one
row), so the figures are the driver's own cost, not the server's work.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import psycopg
from psycopg import pq
from psycopg.rows import dict_row

from bench.__main__ import _postgres_admin_url
from perdure.store.postgres.wire import Pipeline

STATEMENT = "SELECT %(a)s::bigint AS a, %(b)s::text AS b"


def psycopg_transaction(conn: psycopg.Connection, statements: int) -> None:
    """One transaction through psycopg's pipeline."""
    with conn.pipeline():
        conn.execute("BEGIN")
        cursors = [conn.execute(STATEMENT, {"a": i, "b": "x"}) for i in range(statements)]
        conn.execute("COMMIT")
    for cursor in cursors:
        cursor.fetchall()


def perdure_transaction(conn: psycopg.Connection, statements: int) -> None:
    """The same transaction through the store's pipeline."""
    pipeline = Pipeline(conn)
    try:
        pipeline.execute("BEGIN")
        answers = [pipeline.execute(STATEMENT, {"a": i, "b": "x"}) for i in range(statements)]
        pipeline.execute("COMMIT")
        pipeline.sync()
        for answer in answers:
            answer.fetchall()
    finally:
        pipeline.close()


def libpq_transaction(pgconn: pq.abc.PGconn, statements: int) -> None:
    """The same transaction through libpq alone (statements prepared by :func:`prepare`)."""
    pgconn.enter_pipeline_mode()
    pgconn.send_query_prepared(b"bench_begin", None)
    for i in range(statements):
        pgconn.send_query_prepared(b"bench_select", [str(i).encode(), b"x"])
    pgconn.send_query_prepared(b"bench_commit", None)
    pgconn.pipeline_sync()
    pgconn.flush()
    while True:
        result = pgconn.get_result()
        if result is None:
            continue  # the end of one statement's results
        if result.status == pq.ExecStatus.PIPELINE_SYNC:
            break
        if result.status == pq.ExecStatus.TUPLES_OK:
            result.get_value(0, 0)
        elif result.status != pq.ExecStatus.COMMAND_OK:
            raise RuntimeError(f"statement failed: {result.error_message.decode()}")
    pgconn.exit_pipeline_mode()


def prepare(pgconn: pq.abc.PGconn) -> None:
    """Prepare the libpq variant's three statements on the server."""
    for name, sql in (
        (b"bench_begin", b"BEGIN"),
        (b"bench_select", b"SELECT $1::bigint, $2::text"),
        (b"bench_commit", b"COMMIT"),
    ):
        result = pgconn.prepare(name, sql)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise RuntimeError(f"cannot prepare {sql.decode()}: {result.error_message.decode()}")


def measure(send: Callable[[int], None], statements: int, transactions: int) -> tuple[float, float]:
    """CPU and wall seconds per transaction of ``statements`` statements (after a warm-up)."""
    for _ in range(max(10, transactions // 10)):
        send(statements)
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(transactions):
        send(statements)
    return (time.thread_time() - cpu) / transactions, (time.perf_counter() - wall) / transactions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=2000, help="transactions of each shape (default 2000)")
    parser.add_argument("--statements", type=int, default=10, help="statements in the longer shape (default 10)")
    args = parser.parse_args(argv)
    if args.transactions < 1 or args.statements < 1:
        parser.error("--transactions and --statements must be at least 1")
    url = _postgres_admin_url()
    n = args.statements
    with (
        psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn,
        psycopg.connect(url, autocommit=True) as own,
        psycopg.connect(url, autocommit=True) as raw,
    ):
        prepare(raw.pgconn)
        ways: dict[str, Callable[[int], None]] = {
            "psycopg": lambda k: psycopg_transaction(conn, k),
            "perdure": lambda k: perdure_transaction(own, k),
            "libpq": lambda k: libpq_transaction(raw.pgconn, k),
        }
        print(f"{args.transactions} transactions of each shape; CPU of the sending thread, µs")
        print(
            f"{'driver':8} {'per transaction (BEGIN, COMMIT)':>32} {'per statement':>14} {f'wall, {n} statements':>22}"
        )
        for name, send in ways.items():
            empty, _ = measure(send, 0, args.transactions)
            full, wall = measure(send, n, args.transactions)
            print(f"{name:8} {empty * 1e6:32.1f} {(full - empty) / n * 1e6:14.1f} {wall * 1e6:22.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
