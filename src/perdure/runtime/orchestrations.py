"""The orchestration dispatcher: lock instances, run their turns, commit them in groups."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from perdure.core.executor import OrchestrationExecutor
from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    HistoryEvent,
    SubOrchestrationFailed,
    TimerFired,
    TurnStarted,
)
from perdure.core.registry import App
from perdure.runtime.activities import ActivityDispatcher
from perdure.runtime.cache import ExecutorCache
from perdure.runtime.local import chain_local_activities
from perdure.runtime.options import WorkerOptions
from perdure.runtime.translate import failing_commit, turn_commit
from perdure.store.base import NewInstance, OrchestrationWorkItem, Outcome, Store, TurnCommit, TurnStats

log = logging.getLogger("perdure.worker")

# Messages that are retries or failures rather than progress (diagnosis: "last progress").
_NOT_PROGRESS = (ActivityFailed, SubOrchestrationFailed, TimerFired)


class OrchestrationDispatcher:
    """Runs orchestration turns for one worker.

    Each round locks up to ``batch_size`` instances, runs one turn for each (from the state
    cache when the cached executor is current, else by full replay; followed by the turns
    its local activities wake, :mod:`perdure.runtime.local`) and commits all the turns in
    one store transaction. Each commit is fenced by its lease (invariant 2): a turn whose
    lease was lost is dropped whole and its executor evicted.
    """

    def __init__(
        self,
        app: App,
        store: Store,
        owner: str,
        options: WorkerOptions,
        cache: ExecutorCache,
        clock: Callable[[], float],
        counters: Counter[str],
        activities: ActivityDispatcher,
    ) -> None:
        self.app = app
        self.activities = activities
        self.store = store
        self.owner = owner
        self.options = options
        self.cache = cache
        self.clock = clock
        self.counters = counters
        self.names = frozenset(app.orchestrations)

    def poll(self, *, limit: int | None = None) -> int:
        """Lock and process one batch; return how many turns were run."""
        items = self.lock(limit=limit)
        if items:
            self.process(items)
        return len(items)

    def lock(self, *, limit: int | None = None) -> list[OrchestrationWorkItem]:
        """Lock one batch of the orchestrations this worker runs (the first half of
        :meth:`poll`; :meth:`process` is the second). Tests that interleave workers step by
        step call the two halves apart."""
        return self.store.lock_orchestrations(
            self.owner,
            lease_seconds=self.options.lease_seconds,
            limit=limit or self.options.batch_size,
            names=self.names,
            known_history=self.cache.known_history(),
        )

    def process(self, items: Sequence[OrchestrationWorkItem]) -> None:
        """Run one turn per item and group-commit them."""
        batch = TurnBatch(self)
        try:
            outcomes = self.store.commit_turns(batch(list(items)))
        except Exception:
            batch.void()
            raise
        batch.settle(outcomes)

    def start_eagerly(self, instance: NewInstance, *, replace_terminal: bool) -> None:
        """Create ``instance`` and run its first turn (with the local activities it chains)
        in the calling thread, committed together (:meth:`Store.create_and_run`). Raises
        what the store raises (``InstanceExistsError``: nothing was run)."""
        batch = TurnBatch(self)
        try:
            outcomes = self.store.create_and_run(
                instance,
                owner=self.owner,
                lease_seconds=self.options.lease_seconds,
                run_turns=batch,
                replace_terminal=replace_terminal,
            )
        except Exception:
            batch.void()
            raise
        batch.settle(outcomes)
        if outcomes:  # else a scheduled start: its first turn comes when due, from a round
            self.counters["eager_starts"] += 1

    def run_turns(
        self, items: Sequence[OrchestrationWorkItem]
    ) -> tuple[list[TurnCommit], list[OrchestrationExecutor | None]]:
        """Run one turn per item: the commits to write, and the executor behind each (to
        cache once its commit is known to have landed; ``None`` if it must not be cached)."""
        commits: list[TurnCommit] = []
        executors: list[OrchestrationExecutor | None] = []
        local_deadline = time.perf_counter() + self.options.local_activity_budget
        for item in items:
            commit, executor = self._run_turn(item, local_deadline)
            commits.append(commit)
            executors.append(executor)
        return commits, executors

    def forget(self, commits: Sequence[TurnCommit]) -> None:
        """The commits were not written (the write failed): the executors that ran them are
        ahead of the stored history, so none of them may be cached."""
        for commit in commits:
            self.cache.evict(commit.instance_id)

    def settle(
        self,
        commits: Sequence[TurnCommit],
        executors: Sequence[OrchestrationExecutor | None],
        outcomes: Sequence[Outcome],
    ) -> None:
        """Account for each commit's outcome: cache the executor of a turn that landed."""
        for commit, executor, outcome in zip(commits, executors, outcomes, strict=True):
            self._settle(commit, executor, outcome)

    def _settle(self, commit: TurnCommit, executor: OrchestrationExecutor | None, outcome: Outcome) -> None:
        iid = commit.instance_id
        if outcome is Outcome.OK:
            self.counters["turns"] += 1
            if executor is not None and not executor.is_finished and commit.run_id is not None:
                self.cache.put(iid, commit.run_id, executor)
            return
        # LEASE_LOST (commit_turns has no other refusal: an instance cannot become terminal
        # while we hold its lease): another worker took the instance over after our lease
        # expired, and its turns stand.
        self.cache.evict(iid)
        self.counters["turns_lease_lost"] += 1
        log.warning("lease lost on instance %r: turn dropped, nothing written", iid)

    def _run_turn(
        self, item: OrchestrationWorkItem, local_deadline: float
    ) -> tuple[TurnCommit, OrchestrationExecutor | None]:
        instance = item.instance
        iid = instance.instance_id
        now = self.clock()
        if item.history_error is not None:
            # The store could not decode this instance's history: it cannot be replayed, so
            # it fails alone (with its messages recorded) while the rest of the batch goes on.
            failure = Failure(
                "perdure.core.history.EventDecodeError",
                f"the stored history of instance {iid!r} cannot be read ({item.history_error}); "
                f"the instance cannot be replayed and was failed",
                non_retryable=True,
            )
            log.error("instance %r failed: %s", iid, item.history_error)
            self.counters["failed_corrupt_history"] += 1
            return failing_commit(item, failure, now), None
        try:
            executor, past = self._executor_for(item)
            new: list[HistoryEvent] = [TurnStarted(timestamp=now)]
            new.extend(m.event for m in item.messages)
            started = time.perf_counter()
            turn = first = executor.execute(past, new)
            stored: dict[int, str] = {}
            if self.activities.local_names:
                turn, stored = chain_local_activities(
                    executor,
                    first,
                    is_local=self.activities.is_local,
                    run_local=self.activities.run_local,
                    clock=self.clock,
                    deadline=local_deadline,
                )
            duration = time.perf_counter() - started
        except Exception as exc:  # an engine error or unreadable history: fail this instance only
            log.exception("turn of instance %r failed inside the engine", iid)
            self.counters["turns_engine_error"] += 1
            return failing_commit(item, Failure.from_exception(exc), now), None
        full_replay = bool(past)
        self.counters["full_replays" if full_replay else "cached_turns"] += 1
        progressed = any(not isinstance(m.event, _NOT_PROGRESS) for m in item.messages) or (
            turn is not first and any(isinstance(e, ActivityCompleted) for e in turn.new_events)
        )
        stats = TurnStats(duration, full_replay, turn.replayed_events, progressed)
        return turn_commit(item, turn, stats, stored), executor

    def _executor_for(self, item: OrchestrationWorkItem) -> tuple[OrchestrationExecutor, Sequence[HistoryEvent]]:
        """The cached executor if it holds exactly the stored history, else a fresh one with
        the full history to replay."""
        instance = item.instance
        cached = self.cache.take(instance.instance_id, instance.run_id)
        if (
            cached is not None
            and cached.execution_id == instance.execution_id
            and item.history_from == cached.history_length
            and not item.history
        ):
            return cached, ()
        if item.history_from == 0:
            past: Sequence[HistoryEvent] = item.history
        else:
            # The history as the lock saw it: if our lease was taken over meanwhile, later
            # events are another worker's, and replaying them would make this stale turn
            # look like an engine error rather than the lost lease its commit will report.
            records = self.store.get_history(
                instance.instance_id,
                execution_id=instance.execution_id,
                limit=instance.history_event_count,
            )
            past = [r.event for r in records]
        return OrchestrationExecutor(self.app, instance.instance_id), past


class TurnBatch:
    """The ``run_turns`` callback of one store transaction (:meth:`Store.run_round`,
    :meth:`Store.create_and_run`), keeping the turns it ran until the transaction's outcome
    is known. A store that retries the transaction calls it again: the turns of the void
    attempt are forgotten, so only the last attempt's can be settled."""

    def __init__(self, dispatcher: OrchestrationDispatcher) -> None:
        self.dispatcher = dispatcher
        self.commits: list[TurnCommit] = []
        self.executors: list[OrchestrationExecutor | None] = []

    def __call__(self, items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        self.void()
        self.commits, self.executors = self.dispatcher.run_turns(items)
        return self.commits

    def void(self) -> None:
        """Nothing was written: forget the turns run so far."""
        self.dispatcher.forget(self.commits)
        self.commits, self.executors = [], []

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        """The transaction committed with these outcomes of the turns."""
        self.dispatcher.settle(self.commits, self.executors, outcomes)
