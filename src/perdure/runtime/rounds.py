"""A worker round: record finished activities, run the turns that are due, commit them,
and take new activity tasks, in one store transaction (:meth:`Store.run_round`).

One transaction per round instead of four (lock turns, commit turns, lock tasks, complete
tasks) is what makes a sequential step cost one commit: an activity's completion, the turn
it wakes, the next task that turn schedules and the lock on that task land together.
Nothing about the invariants changes: each part keeps its own fencing, and the round is as
atomic as each of its parts was (invariants 1 and 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from perdure.runtime.activities import ActivityDispatcher
from perdure.runtime.options import WorkerOptions
from perdure.runtime.orchestrations import OrchestrationDispatcher, TurnBatch
from perdure.store.base import ActivityWorkItem, RoundRequest, RoundResult, Store


@dataclass(frozen=True, slots=True)
class RoundReport:
    """What a round did and found: how many turns it ran, whether it hit a limit (more work
    is probably waiting), and when work it could take next becomes due (``None``: nothing
    queued it can see)."""

    turns: int
    busy: bool
    next_due: float | None


class RoundRunner:
    """Runs worker rounds with the worker's two dispatchers."""

    def __init__(
        self,
        store: Store,
        owner: str,
        options: WorkerOptions,
        orchestrations: OrchestrationDispatcher,
        activities: ActivityDispatcher,
    ) -> None:
        self.store = store
        self.owner = owner
        self.options = options
        self.orchestrations = orchestrations
        self.activities = activities

    def run(self, start: Callable[[list[ActivityWorkItem]], None] | None = None) -> RoundReport:
        """One round; raises if the store write failed (then nothing of it was written).
        The tasks it locked are started on the activity pool, or handed to ``start``."""
        completions = self.activities.take_completions()
        free = self.activities.free
        request = RoundRequest(
            owner=self.owner,
            lease_seconds=self.options.lease_seconds,
            completions=completions,
            orchestration_limit=self.options.batch_size,
            orchestration_names=self.orchestrations.names,
            known_history=self.orchestrations.cache.known_history(),
            activity_limit=min(free, self.options.batch_size),
            activity_names=self.activities.names,
        )
        turns = TurnBatch(self.orchestrations)
        try:
            result = self.store.run_round(request, turns)
        except Exception:
            self.activities.drop(completions)
            turns.void()
            raise
        self.activities.settle(completions, result.completions)
        turns.settle(result.turns)
        (start or self.activities.start)(result.activities)
        return self._report(request, result)

    def _report(self, request: RoundRequest, result: RoundResult) -> RoundReport:
        busy = len(result.locked) >= request.orchestration_limit or (
            request.activity_limit > 0 and len(result.activities) >= request.activity_limit
        )
        due = [result.next_message_at]
        if self.activities.free > 0:
            due.append(result.next_task_at)
        return RoundReport(len(result.locked), busy, min((t for t in due if t is not None), default=None))
