"""Worker settings."""

from __future__ import annotations

from perdure.core.payload import DEFAULT_MAX_PAYLOAD_BYTES
from perdure.core.records import frozen_record
from perdure.errors import InvalidInputError


@frozen_record
class WorkerOptions:
    """How a worker runs. Every duration is in seconds.

    - ``activity_concurrency``: activities running at once (threads for plain functions,
      tasks on one event loop for ``async def`` ones).
    - ``orchestration_concurrency``: dispatch loops (threads), each running worker rounds
      (:mod:`perdure.runtime.rounds`).
    - ``batch_size``: instances locked and turns committed (group commit), and activity
      tasks taken, per round: one store transaction.
    - ``lease_seconds``: how long a locked orchestration or activity stays ours without
      renewal; running activities are renewed every third of it. After a crash, another
      worker takes the work over once the lease expires.
    - ``poll_interval``: the longest an idle worker sleeps before looking for work written by
      other processes (work from the same process wakes it at once).
    - ``heartbeat_interval``: how often the worker refreshes its heartbeat row; a worker is
      considered gone after three missed heartbeats.
    - ``forget_workers_after``: how long the row of a worker that stopped heartbeating (it
      crashed) is kept for diagnosis before the housekeeping sweep removes it.
    - ``cache_size``: live executors kept between turns (the state cache); 0 disables it.
    - ``shutdown_timeout``: how long ``stop()`` lets running activities finish before
      releasing their leases.
    - ``local_activity_budget``: how long a round may spend running turns with local
      activities (``@app.activity(local=True)``) before it commits: the turns it did not
      get to run first in the next round, and a local activity a chain reaches after that
      goes to the task queue as an ordinary one. 0 runs every local activity that way.
    - ``max_payload_bytes``: the largest JSON an activity may return or an orchestration
      may end with (the client's default limit on inputs); a larger activity result fails
      that attempt with a ``SerializationError``, a larger output fails the orchestration.
    - ``run_local_starts``: a plain ``Client.start`` made in this worker's process, while a
      dispatch loop waits for work, is run by that loop: the instance is created with its
      first turn in one transaction, and ``start`` returns once it committed
      (:mod:`perdure.runtime.handed`). False queues every start, and ``start`` returns
      after its own commit, without waiting for a turn.
    """

    activity_concurrency: int = 256
    orchestration_concurrency: int = 1
    batch_size: int = 128
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    heartbeat_interval: float = 5.0
    forget_workers_after: float = 3600.0
    cache_size: int = 10000
    shutdown_timeout: float = 30.0
    local_activity_budget: float = 0.01
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    run_local_starts: bool = True

    def __post_init__(self) -> None:
        for name in ("activity_concurrency", "orchestration_concurrency", "batch_size", "max_payload_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lease_seconds", "poll_interval", "heartbeat_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise InvalidInputError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("forget_workers_after", "shutdown_timeout", "local_activity_budget"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise InvalidInputError(f"{name} must be a non-negative number of seconds, got {value!r}")
        for name in ("cache_size",):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
        if not isinstance(self.run_local_starts, bool):
            raise InvalidInputError(f"run_local_starts must be True or False, got {self.run_local_starts!r}")
