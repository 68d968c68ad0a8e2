"""Where a SQLite sequential step's time goes: W4 (one orchestration of ``k`` sequential
ordinary activities) with every statement of the store's connections timed, and the pages
each commit writes to the WAL counted by table and index.

    python -m bench.sqlite_step_profile              # k=2000, then 300 steps for the pages
    python -m bench.sqlite_step_profile --k 5000

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). It
reports, per step (an activity and the turn its outcome wakes, one write transaction):

- the step's wall time, and the CPU of each of the worker's threads (an activity's thread
  runs the next round itself: the turn and the transaction);
- for ``BEGIN``, ``COMMIT`` and the other statements (``executemany`` counted once per
  call): how many ran, their wall time and their CPU (``thread_time``); the ``COMMIT``'s
  wall time is mostly the WAL's fsync (``synchronous=FULL``), so it grows with the pages
  written;
- in a second run on a fresh file with the WAL's automatic checkpoints off (so that every
  frame the steps write stays in the file), the frames each commit wrote, by the table or
  index each page belongs to (SQLite's ``dbstat``).

The timing wraps each statement in Python, which adds about a microsecond to each.
"""

from __future__ import annotations

import argparse
import sqlite3
import struct
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import perdure
from bench.cpu import stat_cpu
from bench.workloads import app, chain

_WAL_HEADER = 32
_FRAME_HEADER = 24


class Timings:
    """Statement timings by kind (``BEGIN``, ``COMMIT``, ``other``, ``executemany``), while on."""

    def __init__(self) -> None:
        self.on = False
        self.calls: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def timed(self, kind: str, run: Callable[[], Any]) -> Any:
        if not self.on:
            return run()
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return run()
        finally:
            self.calls[kind].append((time.perf_counter() - wall, time.thread_time() - cpu))


@contextmanager
def connections(factory: type[sqlite3.Connection]) -> Iterator[None]:
    """Have every ``sqlite3.connect`` meanwhile make connections of ``factory``."""
    connect = sqlite3.connect

    def make(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, factory=factory, **kwargs)

    sqlite3.connect = make  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = connect


def timed_connection(timings: Timings) -> type[sqlite3.Connection]:
    """A connection class that reports its statements to ``timings``."""

    class Timed(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            kind = sql if sql in ("BEGIN IMMEDIATE", "COMMIT") else "other"
            return timings.timed(kind, lambda: super(Timed, self).execute(sql, *args))

        def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
            return timings.timed("executemany", lambda: super(Timed, self).executemany(sql, *args))

    return Timed


class NoCheckpoints(sqlite3.Connection):
    """A connection with the WAL's automatic checkpoints off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA wal_autocheckpoint = 0")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads by name (from ``/proc``)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    cpu: dict[str, float] = Counter()
    for task in Path("/proc/self/task").iterdir():
        name = names.get(int(task.name), "other")
        cpu[name.rstrip("0123456789").rstrip("-_") or name] += stat_cpu(str(task / "stat"))
    return cpu


def timed_run(path: Path, k: int) -> tuple[float, Timings, dict[str, float]]:
    """W4 of ``k`` steps on a fresh file: wall seconds, statement timings, thread CPU."""
    timings = Timings()
    with connections(timed_connection(timings)):
        store = perdure.open_store(f"sqlite:///{path}")
        client = perdure.Client(store)
        with perdure.Worker(app, store):
            client.wait(client.start(chain, 1), timeout=60)  # warm-up
            before = thread_cpu()
            timings.on = True
            started = time.perf_counter()
            assert client.wait(client.start(chain, k), timeout=600).output == k
            wall = time.perf_counter() - started
            timings.on = False
            after = thread_cpu()
        store.close()
    return wall, timings, {name: after[name] - before.get(name, 0.0) for name in after}


def wal_pages(path: Path, k: int) -> tuple[int, Counter[str]]:
    """W4 of ``k`` steps on a fresh file without checkpoints: the commits, and the frames
    they wrote by table or index."""
    with connections(NoCheckpoints):
        store = perdure.open_store(f"sqlite:///{path}")
        client = perdure.Client(store)
        with perdure.Worker(app, store):
            client.wait(client.start(chain, 1), timeout=60)
            wal = Path(f"{path}-wal")
            start = wal.stat().st_size
            assert client.wait(client.start(chain, k), timeout=600).output == k
            data = wal.read_bytes()
            with sqlite3.connect(path) as conn:
                owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
        store.close()
    page_size = struct.unpack(">I", data[8:12])[0]
    commits, pages = 0, Counter[str]()
    offset = max(start, _WAL_HEADER)
    while offset + _FRAME_HEADER + page_size <= len(data):
        page, size_after_commit = struct.unpack(">II", data[offset : offset + 8])
        pages[owner.get(page, f"page {page}")] += 1
        commits += size_after_commit != 0  # the last frame of a commit records the database size
        offset += _FRAME_HEADER + page_size
    return commits, pages


def main(argv: list[str] | None = None) -> int:
    """Run W4 twice (timed, then counting pages); print the per-step figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_step_profile", description=__doc__)
    parser.add_argument("--k", type=int, default=2000, help="W4's activities in the timed run")
    parser.add_argument("--k-pages", type=int, default=300, help="W4's activities in the run that counts pages")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wall, timings, cpu = timed_run(Path(tmp) / "timed.db", args.k)
        commits, pages = wal_pages(Path(tmp) / "pages.db", args.k_pages)
    k = args.k
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, SQLite {sqlite3.sqlite_version}")
    print(f"W4 k={k}: {1000 * wall / k:.3f} ms per step")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        # The worker's threads always (a few steps may take less than a clock tick).
        if name.startswith("perdure-") or seconds * 1000 / k >= 0.005:
            print(f"  CPU of {name} threads: {1000 * seconds / k:.3f} ms per step")
    print("statements per step: count, wall ms, CPU ms")
    for kind in ("BEGIN IMMEDIATE", "COMMIT", "other", "executemany"):
        calls = timings.calls.get(kind, [])
        wall_ms = 1000 * sum(w for w, _ in calls) / k
        cpu_ms = 1000 * sum(c for _, c in calls) / k
        print(f"  {kind:16s} {len(calls) / k:6.2f}  {wall_ms:7.3f}  {cpu_ms:7.3f}")
    frames = sum(pages.values())
    print(f"WAL frames per commit ({commits} commits of W4 k={args.k_pages}): {frames / commits:.2f}")
    for name, count in pages.most_common():
        if count / commits >= 0.05:
            print(f"  {count / commits:5.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
