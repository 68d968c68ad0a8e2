"""The state cache: live executors kept between turns so a turn applies only new events."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping

from perdure.core.executor import OrchestrationExecutor


class ExecutorCache:
    """A bounded LRU of live executors by instance id. Thread-safe.

    An entry is only valid while its execution and history length match the store's; the
    dispatcher checks that (via ``known_history``) and evicts on any mismatch, so a miss or a
    stale entry falls back to a full replay with identical results.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, OrchestrationExecutor] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, instance_id: str) -> OrchestrationExecutor | None:
        """Remove and return the executor of ``instance_id`` (the caller owns it while it runs
        the turn and puts it back afterwards)."""
        with self._lock:
            return self._entries.pop(instance_id, None)

    def put(self, instance_id: str, executor: OrchestrationExecutor) -> None:
        """Keep ``executor`` as the most recently used entry, evicting the oldest if full."""
        if self.capacity <= 0 or executor.is_finished:
            return
        with self._lock:
            self._entries[instance_id] = executor
            self._entries.move_to_end(instance_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def evict(self, instance_id: str) -> None:
        """Forget ``instance_id``."""
        with self._lock:
            self._entries.pop(instance_id, None)

    def known_history(self) -> Mapping[str, tuple[int, int]]:
        """A live view ``instance_id -> (execution_id, history_length)`` of the cached
        executors, for ``Store.lock_orchestrations(known_history=...)`` (no copy per call)."""
        return _KnownHistory(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class _KnownHistory(Mapping[str, tuple[int, int]]):
    """Read-only view of a cache's executors as (execution_id, history_length)."""

    def __init__(self, entries: OrderedDict[str, OrchestrationExecutor]) -> None:
        self._entries = entries

    def __getitem__(self, instance_id: str) -> tuple[int, int]:
        executor = self._entries[instance_id]
        return executor.execution_id, executor.history_length

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
