"""The state cache: live executors kept between turns so a turn applies only new events."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping

from perdure.core.executor import OrchestrationExecutor


class ExecutorCache:
    """A bounded LRU of live executors by instance id, each with the run it belongs to.
    Thread-safe.

    An entry is only valid while its run, execution and history length match the store's
    (invariant 9: a run is not its id, so an executor of one run is never resumed with
    another run's messages, whatever their history lengths); the dispatcher checks that
    (via ``known_history``) and evicts on any mismatch, so a miss or a stale entry falls
    back to a full replay with identical results.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[str, OrchestrationExecutor]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, instance_id: str, run_id: str) -> OrchestrationExecutor | None:
        """Remove and return the executor of ``instance_id`` if it runs ``run_id`` (the
        caller owns it while it runs the turn and puts it back afterwards); an entry of
        another run is dropped."""
        with self._lock:
            entry = self._entries.pop(instance_id, None)
        if entry is None or entry[0] != run_id:
            return None
        return entry[1]

    def put(self, instance_id: str, run_id: str, executor: OrchestrationExecutor) -> None:
        """Keep ``executor`` of run ``run_id`` as the most recently used entry, evicting the
        oldest if full."""
        if self.capacity <= 0 or executor.is_finished:
            return
        with self._lock:
            self._entries[instance_id] = (run_id, executor)
            self._entries.move_to_end(instance_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def evict(self, instance_id: str) -> None:
        """Forget ``instance_id``."""
        with self._lock:
            self._entries.pop(instance_id, None)

    def known_history(self) -> Mapping[str, tuple[str | None, int, int]]:
        """A live view ``instance_id -> (run_id, execution_id, history_length)`` of the cached
        executors, for ``Store.lock_orchestrations(known_history=...)`` (no copy per call)."""
        return _KnownHistory(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class _KnownHistory(Mapping[str, tuple[str | None, int, int]]):
    """Read-only view of a cache's executors as (run_id, execution_id, history_length)."""

    def __init__(self, entries: OrderedDict[str, tuple[str, OrchestrationExecutor]]) -> None:
        self._entries = entries

    def __getitem__(self, instance_id: str) -> tuple[str | None, int, int]:
        run_id, executor = self._entries[instance_id]
        return run_id, executor.execution_id, executor.history_length

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
