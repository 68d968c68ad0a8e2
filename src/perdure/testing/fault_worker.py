"""A worker process with faults injected at the store's write points, for crash tests.

::

    python -m perdure.testing.fault_worker --app tests.faults.workload:app \\
        --store sqlite:///x.db --fault "commit_turns:after@3=kill" [--lease 1]

runs a :class:`~perdure.Worker` for the App on a :class:`FaultyStore` wrapping the store
(faults from ``--fault`` options and the ``PERDURE_FAULTS`` environment variable). A
``kill`` fault ends the process with ``SIGKILL`` at that point. When every instance in the
store is terminal (or after ``--timeout`` seconds) it stops and exits with status 0 if no
fault fired, 3 if one fired without ending the process (a ``raise`` or ``delay``), or 4 on
timeout.
"""

from __future__ import annotations

import argparse
import sys
import time

from perdure.cli import load_app
from perdure.core.status import OrchestrationStatus
from perdure.runtime.worker import Worker
from perdure.store.base import InstanceQuery
from perdure.store.open import open_store
from perdure.testing.faulty_store import FaultyStore

EXIT_UNFIRED, EXIT_FIRED, EXIT_TIMEOUT = 0, 3, 4
_LIVE = [s for s in OrchestrationStatus if not s.is_terminal]


def main(argv: list[str] | None = None) -> int:
    """Run the worker until the store is done, a fault kills it, or the timeout."""
    parser = argparse.ArgumentParser(prog="python -m perdure.testing.fault_worker")
    parser.add_argument("--app", required=True, help="module:attribute of the App")
    parser.add_argument("--store", required=True, help="store URL")
    parser.add_argument("--fault", action="append", default=[], help="fault spec (repeatable)")
    parser.add_argument("--lease", type=float, default=1.0, help="lease seconds")
    parser.add_argument("--poll-interval", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    app = load_app(args.app)
    inner = open_store(args.store)
    store = FaultyStore.from_env(inner, args.fault)
    worker = Worker(
        app,
        store,  # type: ignore[arg-type]
        lease_seconds=args.lease,
        poll_interval=args.poll_interval,
        heartbeat_interval=0.2,
        shutdown_timeout=0.5,
    )
    deadline = time.monotonic() + args.timeout
    code = EXIT_TIMEOUT
    with worker:
        while time.monotonic() < deadline:
            if not inner.list_instances(InstanceQuery(statuses=_LIVE, limit=1)).items:
                code = EXIT_FIRED if store.fired else EXIT_UNFIRED
                break
            time.sleep(0.02)
    inner.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
