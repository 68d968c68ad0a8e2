"""Where a start → result's wall time goes: W3 (orchestrations one after another, one
ordinary activity each, started with ``client.start`` and awaited with ``client.wait``)
with the worker's transactions and rounds time-stamped.

    python -m bench.start_timeline                   # SQLite, 300 orchestrations
    python -m bench.start_timeline --store postgres --eager

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). With a
worker of the same process idle, a start is handed to its dispatch loop (``--eager``: run on
the caller's thread), which creates the instance and runs its first turn in one
transaction (``Store.create_and_run``); the activity's outcome is then applied by a round.
Per orchestration (medians), it reports the parts of that path:

- to the start's transaction: from the call of ``start`` to ``create_and_run``;
- start's transaction: ``create_and_run`` (the first turn, which schedules the activity,
  and its commit);
- to the last round: from the end of that transaction to the round that ends the
  instance (the activity's thread wakes, runs it, queues its outcome);
- last round: that round (``RoundRunner.run``), its turn and its transaction;
- to the result: from the end of that round to the return of ``wait`` (the caller's
  wake-up and its read of the instance);

and, off that path, the time from the end of the start's transaction to the return of
``start`` (the caller's wake-up), and how many rounds each orchestration took.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import perdure
from bench.__main__ import fresh_store_url, w3_options
from bench.workloads import _sequence, app
from perdure.runtime.rounds import RoundRunner

PARTS = ("to the start's transaction", "start's transaction", "to the last round", "last round", "to the result")


@contextmanager
def stamped(cls: type, name: str, spans: list[tuple[float, float]]) -> Iterator[None]:
    """Append the (start, end) of every call of ``cls.name`` to ``spans``."""
    original = getattr(cls, name)

    def method(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((started, time.perf_counter()))

    setattr(cls, name, method)
    try:
        yield
    finally:
        setattr(cls, name, original)


def timed_runs(url: str, count: int, eager: bool) -> list[dict[str, float]]:
    """``count`` start → result runs on ``url``: each one's parts (seconds), its time
    from the start's commit to the return of ``start``, and its rounds."""
    store = perdure.open_store(url)
    client = perdure.Client(store)
    orchestration = _sequence(local=False)
    creates: list[tuple[float, float]] = []
    rounds: list[tuple[float, float]] = []
    runs = []
    with ExitStack() as stack:
        stack.enter_context(stamped(type(store), "create_and_run", creates))
        stack.enter_context(stamped(RoundRunner, "run", rounds))
        stack.callback(store.close)
        with perdure.Worker(app, store):
            client.wait(client.start(orchestration, 1, eager=eager), timeout=60)  # warm-up
            for _ in range(count):
                creates.clear()
                rounds.clear()
                called = time.perf_counter()
                instance_id = client.start(orchestration, 1, eager=eager)
                returned = time.perf_counter()
                assert client.wait(instance_id, timeout=60).output == 1
                done = time.perf_counter()
                # Rounds that turned nothing up may follow the last one before wait returns.
                applied = [span for span in rounds if span[1] <= done]
                if len(creates) != 1 or not applied:
                    continue  # a start that was queued, not run by the worker of this process
                (create_start, create_end), (round_start, round_end) = creates[0], applied[-1]
                runs.append(
                    {
                        PARTS[0]: create_start - called,
                        PARTS[1]: create_end - create_start,
                        PARTS[2]: round_start - create_end,
                        PARTS[3]: round_end - round_start,
                        PARTS[4]: done - round_end,
                        "start returns": returned - create_end,
                        "rounds": len(applied),
                    }
                )
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run W3 with the stamps on; print the medians of each part."""
    args = w3_options("python -m bench.start_timeline", __doc__, 300, argv)
    with fresh_store_url(args.store) as url:
        runs = timed_runs(url, args.orchestrations, args.eager)
    median: Callable[[str], float] = lambda part: 1000 * statistics.median(run[part] for run in runs)  # noqa: E731
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {args.store}{', eager starts' if args.eager else ''}")
    print(f"W3: {len(runs)} of {args.orchestrations} orchestrations timed; median ms")
    total = [1000 * sum(run[part] for part in PARTS) for run in runs]
    print(f"  {'start → result':28} {statistics.median(total):7.3f}")
    for part in PARTS:
        print(f"    {part:26} {median(part):7.3f}")
    print(f"  off the path: start's transaction → start returns {median('start returns'):.3f}")
    print(f"  rounds per orchestration: {statistics.median(run['rounds'] for run in runs):g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
