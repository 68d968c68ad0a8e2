"""The orchestration dispatcher: lock instances, run their turns, commit them in groups."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

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
from perdure.core.records import frozen_record
from perdure.core.registry import App
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import Turn
from perdure.logs import ids
from perdure.runtime.activities import ActivityDispatcher
from perdure.runtime.cache import ExecutorCache
from perdure.runtime.held import HeldLeases
from perdure.runtime.local import chain_local_activities
from perdure.runtime.observe import CACHED, FAILED, REPLAYED, Observers, TurnReport, running_turn
from perdure.runtime.options import WorkerOptions
from perdure.runtime.translate import failing_commit, turn_commit
from perdure.runtime.turn_log import log_turn
from perdure.store.base import (
    ActivityWorkItem,
    LockedInstance,
    NewInstance,
    OrchestrationWorkItem,
    Outcome,
    Store,
    TaskRequest,
    TurnCommit,
    TurnStats,
)

log = logging.getLogger("perdure.worker")

# Messages that are retries or failures rather than progress (diagnosis: "last progress").
_NOT_PROGRESS = (ActivityFailed, SubOrchestrationFailed, TimerFired)


class OrchestrationDispatcher:
    """Runs orchestration turns for one worker.

    It runs one turn per locked instance (from the state cache when the cached executor is
    current, else by full replay; followed by the turns its local activities wake,
    :mod:`perdure.runtime.local`), and the worker's round commits them in one store
    transaction. Each commit is fenced by its lease (invariant 2): a turn whose lease was
    lost is dropped whole and its executor evicted. ``held``: the leases it kept
    (:mod:`perdure.runtime.held`).
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
        observers: Observers | None = None,
    ) -> None:
        self.app = app
        self.activities = activities
        self.store = store
        self.owner = owner
        self.options = options
        self.cache = cache
        self.clock = clock
        self.counters = counters
        self.observers = observers or Observers()
        self.names = app.routing_keys()
        self.held = HeldLeases(clock, options.lease_seconds)

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
            held=self.held.tokens(),
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

    def start_eagerly(
        self,
        instance: NewInstance,
        *,
        replace_terminal: bool,
        request_id: str | None = None,
        counter: str = "eager_starts",
        start: Callable[[list[ActivityWorkItem]], None] | None = None,
    ) -> None:
        """Create ``instance`` and run its first turn (with the local activities it chains)
        in the calling thread, committed together (:meth:`Store.create_and_run`), counted
        in ``counter``; the tasks the turn scheduled and took go to ``start`` (default: the
        activity pool). Raises what the store raises (``InstanceExistsError``: nothing was
        run)."""
        batch = TurnBatch(self, keep_leases=True)
        activities = self.activities
        with activities.reserve(self.options.batch_size) as room:
            try:
                result = self.store.create_and_run(
                    instance,
                    owner=self.owner,
                    lease_seconds=self.options.lease_seconds,
                    run_turns=batch,
                    replace_terminal=replace_terminal,
                    request_id=request_id,
                    # The tasks the turn schedules start at once, as after a worker round.
                    tasks=TaskRequest(room, activities.names),
                )
            except Exception:
                batch.void()
                raise
            batch.settle(result.turns)
            (start or activities.start)(result.activities)
        if result.turns:  # else a scheduled start: its first turn comes when due, from a round
            self.counters[counter] += 1

    def run_turns(
        self,
        items: Sequence[OrchestrationWorkItem],
        *,
        keep_leases: bool = False,
        deferred: list[OrchestrationWorkItem] | None = None,
    ) -> list[TurnRun]:
        """Run one turn per item. With ``keep_leases``, a turn that leaves its instance
        waiting on activities this worker runs keeps its lease (:mod:`perdure.runtime.held`).

        With a ``deferred`` list, once local activities have run and the round's
        ``local_activity_budget`` is spent, the remaining items (those with no outcomes
        handed over) are put in ``deferred`` instead of run: they stay locked, and run first
        in the next round with their local activities inline. Run now, their local
        activities would find the budget spent and go through the task queue, a round trip
        of the queue per step. Turns without local activities are never deferred."""
        local_deadline = time.perf_counter() + self.options.local_activity_budget
        ran_local = False
        runs: list[TurnRun] = []
        for item in items:
            if deferred is not None and ran_local and not item.handed_over and time.perf_counter() >= local_deadline:
                deferred.append(item)
                continue
            run = self._run_turn(item, local_deadline, keep_leases)
            ran_local = ran_local or run.ran_local
            runs.append(run)
        return runs

    def release_held(self) -> None:
        """Give back every held lease (a stopping worker), so other workers take the
        instances at once instead of when the leases expire."""
        for iid, token in self.held.take_all().items():
            try:
                self.store.abandon_orchestration(iid, token)
            except Exception:  # lost meanwhile, or the store is gone: it expires instead
                log.debug("could not release the lease on %r", iid, exc_info=True)

    def forget(self, runs: Sequence[TurnRun]) -> None:
        """The commits were not written (the write failed): the executors that ran them are
        ahead of the stored history, so none of them may be cached."""
        for run in runs:
            self.cache.evict(run.commit.instance_id)

    def settle(self, runs: Sequence[TurnRun], outcomes: Sequence[Outcome]) -> None:
        """Account for each commit's outcome: cache the executor of a turn that landed, and
        hold the lease it kept."""
        for run, outcome in zip(runs, outcomes, strict=True):
            self._settle(run, outcome)

    def _settle(self, run: TurnRun, outcome: Outcome) -> None:
        commit, executor = run.commit, run.executor
        iid = commit.instance_id
        if outcome is Outcome.OK:
            self.counters["turns"] += 1
            log_turn(commit)
            if run.report is not None:
                self.observers.on_turn(run.report)
            if executor is not None and not executor.is_finished and commit.run_id is not None:
                self.cache.put(iid, commit.run_id, executor)
            if run.kept is not None:
                self.held.keep(commit, run.kept, run.lease_expires_at)
            else:
                self.held.drop(iid)
            return
        # LEASE_LOST: another worker took the instance over after our lease expired, and its
        # turns stand; or outcomes handed to the turn came after messages it did not see
        # (they were queued behind them instead, and the instance is taken again).
        self.cache.evict(iid)
        self.held.drop(iid)
        if commit.handed_over:
            self.counters["handovers_refused"] += 1
            return
        self.counters["turns_lease_lost"] += 1
        if self.observers.active:
            self.observers.on_lease_lost("orchestration")
        log.warning("lease lost on instance %r: turn dropped, nothing written", iid, extra=ids(iid))

    def _run_turn(self, item: OrchestrationWorkItem, local_deadline: float, keep_leases: bool) -> TurnRun:
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
            return self._failed_run(item, failing_commit(item, failure, now))
        try:
            executor, past = self._executor_for(item)
            new: list[HistoryEvent] = [TurnStarted(timestamp=now)]
            new.extend(m.event for m in item.messages)
            started = time.perf_counter()
            turn = first = executor.execute(past, new, parent=item.instance.parent)
            stored: dict[int, str] = {}
            if self.activities.local_names:
                if self.observers.active:  # the run its local activities belong to
                    running_turn.set(_report(item, first, executor, CACHED, 0.0, ()))
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
            return self._failed_run(item, failing_commit(item, Failure.from_exception(exc), now))
        full_replay = bool(past)
        self.counters["full_replays" if full_replay else "cached_turns"] += 1
        progressed = any(not isinstance(m.event, _NOT_PROGRESS) for m in item.messages) or (
            turn is not first and any(isinstance(e, ActivityCompleted) for e in turn.new_events)
        )
        stats = TurnStats(duration, full_replay, turn.replayed_events, progressed)
        # Messages already encoded (as the store read them, or handed over) are written as is.
        stored.update((id(m.event), m.event_json) for m in item.messages if m.event_json)
        kept = self._kept(item, turn, executor) if keep_leases else None
        # A kept lease is extended once half of it has gone (HeldLeases uses it while a
        # third is left): most steps of a sequence write nothing to it.
        extend = kept is not None and item.lease_expires_at - now < self.options.lease_seconds / 2
        commit = turn_commit(item, turn, stats, stored, release=kept is None, extend_lease=extend)
        report = None
        if self.observers.active:
            outcome = REPLAYED if full_replay else CACHED
            report = _report(item, turn, executor, outcome, duration, commit.new_events)
        return TurnRun(
            commit, executor, kept, report, ran_local=turn is not first, lease_expires_at=item.lease_expires_at
        )

    def _failed_run(self, item: OrchestrationWorkItem, commit: TurnCommit) -> TurnRun:
        """The run of a turn the engine failed without running user code."""
        report = None
        if self.observers.active:
            instance = item.instance
            report = TurnReport(
                instance.name,
                instance.instance_id,
                instance.run_id,
                commit.execution_id,
                FAILED,
                0.0,
                commit.new_events,
                commit.status,
                parent=instance.parent,
            )
        return TurnRun(commit, None, report=report)

    def _kept(self, item: OrchestrationWorkItem, turn: Turn, executor: OrchestrationExecutor) -> LockedInstance | None:
        """The instance as ``turn`` leaves it, if its lease is worth keeping: it waits on an
        activity this worker runs (then its outcome goes straight to the next turn)."""
        if turn.status is not OrchestrationStatus.RUNNING or turn.continued_as_new:
            return None
        if not any(a.name in self.activities.names for a in turn.waiting_on.activities):
            return None
        return replace(
            item.instance,
            status=OrchestrationStatus.RUNNING,
            history_event_count=executor.history_length,
            custom_status=turn.custom_status,
        )

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
        executor = OrchestrationExecutor(
            self.app, instance.instance_id, max_payload_bytes=self.options.max_payload_bytes
        )
        return executor, past


def _report(
    item: OrchestrationWorkItem,
    turn: Turn,
    executor: OrchestrationExecutor,
    outcome: str,
    seconds: float,
    events: Sequence[HistoryEvent],
) -> TurnReport:
    """What the worker's observers are told of a turn run on ``item``."""
    instance = item.instance
    return TurnReport(
        instance.name,
        instance.instance_id,
        instance.run_id,
        turn.execution_id,
        outcome,
        seconds,
        events,
        turn.status,
        trace=turn.trace,
        parent=turn.parent,
        started_at=executor.started_at,
    )


@frozen_record
class TurnRun:
    """One turn run: its commit, the executor behind it (to cache once the commit is known
    to have landed; ``None`` if it must not be), and the instance as the turn left it when
    the commit keeps the lease (``kept``), with the lease's expiry before the commit."""

    commit: TurnCommit
    executor: OrchestrationExecutor | None
    kept: LockedInstance | None = None
    report: TurnReport | None = None  # for the worker's observers, once it has committed
    ran_local: bool = False  # it ran local activities (see OrchestrationDispatcher.run_turns)
    lease_expires_at: float = 0.0


class TurnBatch:
    """The turns of one store write (:meth:`Store.run_round`, :meth:`Store.commit_turns`,
    :meth:`Store.create_and_run`), kept until the write's outcome is known. Calling it runs
    the turns (the ``run_turns`` callback of ``create_and_run``); a second call forgets the
    first one's."""

    def __init__(self, dispatcher: OrchestrationDispatcher, *, keep_leases: bool = False, defer: bool = False) -> None:
        self.dispatcher = dispatcher
        self.keep_leases = keep_leases
        self.defer = defer
        self.runs: list[TurnRun] = []
        self.deferred: list[OrchestrationWorkItem] = []  # with ``defer``: see OrchestrationDispatcher.run_turns

    def __call__(self, items: list[OrchestrationWorkItem]) -> list[TurnCommit]:
        self.void()
        self.deferred = []
        deferred = self.deferred if self.defer else None
        self.runs = self.dispatcher.run_turns(items, keep_leases=self.keep_leases, deferred=deferred)
        return [run.commit for run in self.runs]

    def void(self) -> None:
        """Nothing was written: forget the turns run so far."""
        self.dispatcher.forget(self.runs)
        self.runs = []

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        """The write committed with these outcomes of the turns."""
        self.dispatcher.settle(self.runs, outcomes)
