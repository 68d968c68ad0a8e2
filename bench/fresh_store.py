"""What a fresh store's first commits cost: W4 orchestrations (``k`` sequential ordinary
activities each) run one after another on one new store, each one's time per step.

    python -m bench.fresh_store                      # SQLite, 8 orchestrations of 100 steps
    python -m bench.fresh_store --store postgres --orchestrations 5 --k 200

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). Every
run of ``python -m bench`` and ``python -m bench.vs_dbos`` starts on a fresh store; this
shows how much of a short run's time per step that costs, against the steps of a store
already in use.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import perdure
from bench.__main__ import fresh_store_url
from bench.workloads import _sequence, app


def steps_per_orchestration(url: str, orchestrations: int, k: int) -> list[float]:
    """The ms per step of each of ``orchestrations`` W4 runs of ``k`` steps on ``url``, in
    the order they ran (after a one-step warm-up)."""
    store = perdure.open_store(url)
    client = perdure.Client(store)
    orchestration = _sequence(local=False)
    times = []
    try:
        with perdure.Worker(app, store):
            client.wait(client.start(orchestration, 1), timeout=60)  # warm-up
            for _ in range(orchestrations):
                started = time.perf_counter()
                state = client.wait(client.start(orchestration, k), timeout=600)
                times.append(1000 * (time.perf_counter() - started) / k)
                assert state.output == k
    finally:
        store.close()
    return times


def main(argv: list[str] | None = None) -> int:
    """Print each orchestration's ms per step, on a fresh store of ``--store``."""
    parser = argparse.ArgumentParser(prog="python -m bench.fresh_store", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--orchestrations", type=int, default=8)
    parser.add_argument("--k", type=int, default=100, help="steps of each orchestration")
    args = parser.parse_args(argv)
    with fresh_store_url(args.store) as url:
        times = steps_per_orchestration(url, args.orchestrations, args.k)
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {args.store}, W4 k={args.k}, one fresh store")
    for n, ms in enumerate(times, 1):
        print(f"  orchestration {n}: {ms:.3f} ms per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
