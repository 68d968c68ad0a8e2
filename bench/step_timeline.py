"""Where a sequential step's wall time goes between the worker's threads: W4 (one
orchestration of ``k`` sequential ordinary activities) with the worker's rounds and
activity calls time-stamped.

    python -m bench.step_timeline                    # SQLite, k=2000
    python -m bench.step_timeline --store postgres --k 1000

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). A
step is a round (the turn, then its transaction, which locks the next task), then the
task's activity, whose outcome the next round hands to the instance's next turn. Per step
(medians over the steps), it reports:

- round: the round (``RoundRunner.run``), turn and transaction;
- to the activity: from the end of the round to the activity's call (on another thread:
  that thread's wake-up, and the GIL once the round's thread waits);
- activity: the call, the activity itself plus its outcome's encoding;
- to the next round: from the end of the call to the next round (on another thread: that
  thread's wake-up);

and on which threads the rounds ran (the dispatch loop's, or an activity thread's, which
runs the next round itself once an activity's outcome is queued).

The stamps wrap methods in Python, which adds about a microsecond to each part.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import perdure
from bench.__main__ import fresh_store_url
from bench.workloads import app, chain
from perdure.runtime.activities import ActivityDispatcher
from perdure.runtime.rounds import RoundRunner

PARTS = ("round", "to the activity", "activity", "to the next round")


class Stamps:
    """Times at which the worker's threads pass the points of a step, while on."""

    def __init__(self) -> None:
        self.on = False
        self.round_start: list[float] = []
        self.round_end: list[float] = []
        self.call_start: list[float] = []
        self.call_end: list[float] = []
        self.round_threads: Counter[str] = Counter()

    def steps(self) -> dict[str, list[float]]:
        """Each part's seconds, per step: a round, then an activity call, then a round."""
        parts: dict[str, list[float]] = {name: [] for name in PARTS}
        for started, ended in zip(self.round_start, self.round_end, strict=False):
            call_start = _after(self.call_start, ended)
            call_end = _after(self.call_end, call_start)
            next_round = _after(self.round_start, call_end)
            if call_start is None or call_end is None or next_round is None:
                continue
            parts["round"].append(ended - started)
            parts["to the activity"].append(call_start - ended)
            parts["activity"].append(call_end - call_start)
            parts["to the next round"].append(next_round - call_end)
        return parts


def _after(times: list[float], at: float | None) -> float | None:
    """The first time in sorted ``times`` after ``at``."""
    if at is None:
        return None
    index = bisect.bisect_right(times, at)
    return times[index] if index < len(times) else None


@contextmanager
def stamped(stamps: Stamps) -> Iterator[None]:
    """Stamp the worker's rounds and activity calls into ``stamps``."""

    def wrap(
        cls: type, name: str, before: list[float], after: list[float], threads: Counter[str] | None = None
    ) -> Callable[[], None]:
        original = getattr(cls, name)

        def method(*args: Any, **kwargs: Any) -> Any:
            if not stamps.on:
                return original(*args, **kwargs)
            before.append(time.perf_counter())
            try:
                return original(*args, **kwargs)
            finally:
                after.append(time.perf_counter())
                if threads is not None:
                    threads[threading.current_thread().name.rstrip("0123456789").rstrip("-_")] += 1

        setattr(cls, name, method)
        return lambda: setattr(cls, name, original)

    with ExitStack() as stack:
        stack.callback(wrap(RoundRunner, "run", stamps.round_start, stamps.round_end, stamps.round_threads))
        stack.callback(wrap(ActivityDispatcher, "_call_sync", stamps.call_start, stamps.call_end))
        yield


def timed_run(url: str, k: int) -> tuple[float, Stamps]:
    """W4 of ``k`` steps on ``url``: wall seconds and the stamps."""
    stamps = Stamps()
    with stamped(stamps):
        store = perdure.open_store(url)
        client = perdure.Client(store)
        with perdure.Worker(app, store):
            client.wait(client.start(chain, 1), timeout=60)  # warm-up
            stamps.on = True
            started = time.perf_counter()
            assert client.wait(client.start(chain, k), timeout=600).output == k
            wall = time.perf_counter() - started
            stamps.on = False
        store.close()
    return wall, stamps


def main(argv: list[str] | None = None) -> int:
    """Run W4 once with the stamps on; print the medians of each part of a step."""
    parser = argparse.ArgumentParser(prog="python -m bench.step_timeline", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--k", type=int, default=2000, help="W4's activities")
    args = parser.parse_args(argv)
    with fresh_store_url(args.store) as url:
        wall, stamps = timed_run(url, args.k)
    parts = stamps.steps()
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {args.store}")
    print(f"W4 k={args.k}: {1000 * wall / args.k:.3f} ms per step; {len(parts['round'])} steps timed")
    print("per step, median (mean) ms:")
    for name in PARTS:
        values = parts[name]
        if values:
            print(f"  {name:18} {1000 * statistics.median(values):7.3f}  ({1000 * statistics.mean(values):.3f})")
    print("rounds by thread: " + ", ".join(f"{name} {n}" for name, n in stamps.round_threads.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
