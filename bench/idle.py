"""CPU used by an idle worker: ``python -m bench.idle [seconds]``.

Starts a worker on a fresh SQLite store with nothing to do and prints the share of one core
its process used over the sample (it should sleep until work is signalled, its next timer is
due, or ``poll_interval`` passes).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import perdure
from bench.workloads import app


def main(seconds: float = 5.0) -> float:
    """Sample for ``seconds`` and return the CPU share in percent of one core."""
    with tempfile.TemporaryDirectory() as tmp:
        store = perdure.open_store(f"sqlite:///{Path(tmp) / 'idle.db'}")
        with perdure.Worker(app, store):
            time.sleep(0.5)
            before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            time.sleep(seconds)
            after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
        store.close()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return 100 * cpu / elapsed


if __name__ == "__main__":
    share = main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
    print(f"idle worker CPU: {share:.2f}% of one core")
