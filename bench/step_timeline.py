"""Where a sequential step's wall time goes between the worker's threads: W4 (one
orchestration of ``k`` sequential ordinary activities) with the dispatch thread's rounds
and the activity threads' runs time-stamped.

    python -m bench.step_timeline                    # SQLite, k=2000
    python -m bench.step_timeline --store postgres --k 1000

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). A
step is a round of the dispatch thread (the turn, then its transaction, which locks the
next task), then the task's run on an activity thread, whose outcome the next round hands
to the instance's next turn. Per step (medians over the steps), it reports:

- round: the dispatch thread's round (``RoundRunner.run``), turn and transaction;
- to the activity: from the round starting the task (``ActivityDispatcher.start``) to an
  activity thread entering its run (the pool thread's wake-up, and the GIL once the
  dispatch thread waits);
- activity: the run on the activity thread, the activity itself plus its outcome's
  encoding and hand-back;
- to the next round: from the end of that run to the dispatch thread entering its next
  round (its wake-up).

The stamps wrap methods in Python, which adds about a microsecond to each part.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import perdure
from bench.__main__ import _fresh_store
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
        self.tasks_started: list[float] = []
        self.run_start: list[float] = []
        self.run_end: list[float] = []

    def steps(self) -> dict[str, list[float]]:
        """Each part's seconds, per step that ran one task and then a round."""
        parts: dict[str, list[float]] = {name: [] for name in PARTS}
        for started in self.tasks_started:
            run_start = _after(self.run_start, started)
            run_end = _after(self.run_end, run_start)
            next_round = _after(self.round_start, run_end)
            round_start = _before(self.round_start, started)
            round_end = _after(self.round_end, round_start)
            if None in (run_start, run_end, next_round, round_start, round_end):
                continue
            parts["round"].append(round_end - round_start)  # type: ignore[operator]
            parts["to the activity"].append(run_start - started)  # type: ignore[operator]
            parts["activity"].append(run_end - run_start)  # type: ignore[operator]
            parts["to the next round"].append(next_round - run_end)  # type: ignore[operator]
        return parts


def _after(times: list[float], at: float | None) -> float | None:
    """The first time in sorted ``times`` after ``at``."""
    if at is None:
        return None
    index = bisect.bisect_right(times, at)
    return times[index] if index < len(times) else None


def _before(times: list[float], at: float) -> float | None:
    """The last time in sorted ``times`` before ``at``."""
    index = bisect.bisect_left(times, at)
    return times[index - 1] if index else None


@contextmanager
def stamped(stamps: Stamps) -> Iterator[None]:
    """Stamp the worker's rounds, task starts and activity runs into ``stamps``."""

    def wrap(cls: type, name: str, before: list[float] | None, after: list[float] | None) -> Callable[[], None]:
        original = getattr(cls, name)

        def method(*args: Any, **kwargs: Any) -> Any:
            if stamps.on and before is not None:
                before.append(time.perf_counter())
            try:
                return original(*args, **kwargs)
            finally:
                if stamps.on and after is not None:
                    after.append(time.perf_counter())

        setattr(cls, name, method)
        return lambda: setattr(cls, name, original)

    with ExitStack() as stack:
        stack.callback(wrap(RoundRunner, "run", stamps.round_start, stamps.round_end))
        stack.callback(wrap(ActivityDispatcher, "start", stamps.tasks_started, None))
        stack.callback(wrap(ActivityDispatcher, "_run_sync", stamps.run_start, stamps.run_end))
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
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = _fresh_store(args.store, Path(tmp))
        try:
            wall, stamps = timed_run(url, args.k)
        finally:
            if drop is not None:
                drop()
    parts = stamps.steps()
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {args.store}")
    print(f"W4 k={args.k}: {1000 * wall / args.k:.3f} ms per step; {len(parts['round'])} steps timed")
    print("per step, median (mean) ms:")
    for name in PARTS:
        values = parts[name]
        if values:
            print(f"  {name:18} {1000 * statistics.median(values):7.3f}  ({1000 * statistics.mean(values):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
