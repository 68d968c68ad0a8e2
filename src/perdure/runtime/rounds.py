"""A worker round: record finished activities and lock the turns that are due, run them,
then commit them and take new activity tasks (:meth:`Store.run_round`: two store
transactions, the orchestration code run between them, never inside one).

Grouping the steps this way is what makes a sequential step cheap: an activity's
completion and the lock on the instance it wakes land together (a commit that need not wait
for the disk), and the turn, the next task it schedules and the lock on that task land
together (one durable commit). Each part keeps its own fencing (invariants 1 and 2).
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
    is probably waiting), when work it could take next becomes due (``None``: nothing
    queued it can see), and the store's time when it looked (``seen_at``): work due by then
    that the round did not take is work this worker cannot take (another worker's names, no
    room), while work due after it became due during the round."""

    turns: int
    busy: bool
    next_due: float | None
    seen_at: float


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
        return RoundReport(len(result.locked), busy, min((t for t in due if t is not None), default=None), result.now)
