"""Which threads of the process spend a start → result's CPU: W3 (orchestrations one after
another, one ordinary activity each, ``client.start`` then ``client.wait``, or ``client.run``
with ``--run``) in the process of its worker, with every thread's CPU time and context
switches read from ``/proc/self/task`` (Linux) before and after the measured part.

    python -m bench.threads                          # SQLite, 2,000 orchestrations
    python -m bench.threads --store postgres --eager
    python -m bench.threads --store postgres --run

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). Per
start → result, for each thread that ran (the caller is ``MainThread``; the worker's
threads are named ``perdure-*``), it reports the CPU in user and kernel mode, and the
voluntary context switches (the thread blocked: on I/O, a lock, a condition, or the GIL)
and involuntary ones (the kernel took the core away). A thread of the same name that
started during the run (an activity thread added to the pool) counts under that name.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import perdure
from bench.__main__ import fresh_store_url, w3_options
from bench.cpu import stat_times
from bench.workloads import _sequence, app, start_to_result


def thread_counters() -> dict[str, Counter[str]]:
    """Every live thread of this process, by name: its CPU seconds (``user``, ``kernel``)
    and context switches (``voluntary``, ``involuntary``) so far."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    counters: dict[str, Counter[str]] = {}
    for task in Path("/proc/self/task").iterdir():
        user, kernel = stat_times(str(task / "stat"))
        try:
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = names.get(int(task.name), f"thread {task.name}")
        counters.setdefault(name, Counter()).update(
            {
                "user": user,
                "kernel": kernel,
                "voluntary": int(status["voluntary_ctxt_switches"]),
                "involuntary": int(status["nonvoluntary_ctxt_switches"]),
            }
        )
    return counters


def measure(url: str, orchestrations: int, eager: bool, run: bool = False) -> tuple[float, dict[str, Counter[str]]]:
    """``orchestrations`` start → result runs after a warm-up (``client.run`` each if
    ``run``): the mean wall seconds of one, and each thread's counters over them all."""
    store = perdure.open_store(url)
    client = perdure.Client(store)
    orchestration = _sequence(local=False)

    one = functools.partial(start_to_result, client, orchestration, 1, eager=eager, separate=not run)
    try:
        with perdure.Worker(app, store):
            for _ in range(50):  # warm-up: statements prepared, threads started, caches filled
                one()
            before = thread_counters()
            started = time.perf_counter()
            for _ in range(orchestrations):
                one()
            wall = time.perf_counter() - started
            after = thread_counters()
    finally:
        store.close()
    spent = {name: counts - before.get(name, Counter()) for name, counts in after.items()}
    return wall / orchestrations, {name: counts for name, counts in spent.items() if +counts}


def main(argv: list[str] | None = None) -> int:
    """Run W3 and print each thread's CPU and context switches per start → result."""
    args = w3_options("python -m bench.threads", __doc__, 2000, argv, run=True)
    with fresh_store_url(args.store) as url:
        wall, spent = measure(url, args.orchestrations, args.eager, args.run)
    n = args.orchestrations
    how = (", eager starts" if args.eager else "") + (", client.run" if args.run else ", start then wait")
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {args.store}{how}")
    print(f"W3: {n} orchestrations, {1000 * wall:.3f} ms per start → result; per start → result:")
    print(f"  {'thread':28} {'user ms':>8} {'kernel ms':>9} {'voluntary':>9} {'involuntary':>11}")
    total: Counter[str] = Counter()
    for name, counts in sorted(spent.items(), key=lambda item: -(item[1]["user"] + item[1]["kernel"])):
        total.update(counts)
        print(
            f"  {name:28} {1000 * counts['user'] / n:8.3f} {1000 * counts['kernel'] / n:9.3f}"
            f" {counts['voluntary'] / n:9.2f} {counts['involuntary'] / n:11.2f}"
        )
    print(
        f"  {'all':28} {1000 * total['user'] / n:8.3f} {1000 * total['kernel'] / n:9.3f}"
        f" {total['voluntary'] / n:9.2f} {total['involuntary'] / n:11.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
