"""Helpers of the scenarios: waiting for a worker to wait for work."""

from __future__ import annotations

import perdure
from tests.races.helpers import until


def idle(worker: perdure.Worker) -> None:
    """Wait until the worker's dispatch loop waits for work (its first rounds are over)."""
    until(lambda: worker.handed.waiting_loops > 0, what="the worker waiting for work")
