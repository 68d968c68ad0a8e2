"""Drive real workers one step at a time, without threads, for race and schedule tests.

A :class:`StepWorker` wraps a :class:`~perdure.Worker` (never started) and exposes the
halves of its work as separate steps, so a test can interleave several workers, expire
leases with a :class:`~perdure.testing.FakeClock` between a lock and its commit, crash a
worker while it holds work, and so on. Turns run on the worker's real orchestration
dispatcher (replay executor, state cache, ``runtime.translate``, group commit); activities
run on the calling thread through the real activity dispatcher (its counters and logs).
:meth:`StepWorker.round` is a started worker's whole round (``Store.run_round``) as one
step; the split steps (lock, run, complete) interleave what one round does atomically.

:func:`drain` then runs workers round-robin, moving the fake clock to the next due
message, task or lease expiry whenever they are idle, until nothing is left to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from perdure.core.registry import App
from perdure.runtime.worker import Worker
from perdure.store.base import ActivityWorkItem, OrchestrationWorkItem, Store
from perdure.testing.faults import FakeClock


class StepWorker:
    """A worker driven step by step. ``lease_seconds`` and ``batch_size`` (and any other
    :class:`~perdure.runtime.options.WorkerOptions`) go to the worker."""

    def __init__(self, app: App, store: Store, worker_id: str, **options: Any) -> None:
        self.app = app
        self.store = store
        self.worker_id = worker_id
        self.options = options
        self.worker = Worker(app, store, worker_id=worker_id, **options)
        self.held_turns: list[OrchestrationWorkItem] = []
        self.held_tasks: list[ActivityWorkItem] = []
        self.crashes = 0

    # -- orchestration turns --

    def lock_turns(self, limit: int | None = None) -> int:
        """Lock a batch of instances and hold it (no turn run yet); return how many."""
        items = self.worker.orchestrations.lock(limit=limit)
        self.held_turns.extend(items)
        return len(items)

    def run_turns(self) -> int:
        """Run and group-commit the turns of every held instance; return how many."""
        items, self.held_turns = self.held_turns, []
        if items:
            self.worker.orchestrations.process(items)
        return len(items)

    def turns(self, limit: int | None = None) -> int:
        """Lock and run one batch (one dispatcher poll); return how many turns ran."""
        return self.worker.orchestrations.poll(limit=limit)

    def turns_of(self, *instance_ids: str) -> int:
        """Lock and run the turns of these instances only (others wait): to force which
        instance moves first. Returns how many turns ran."""
        orchestrations = self.worker.orchestrations
        items = self.store.lock_orchestrations(
            self.worker_id,
            lease_seconds=self.worker.options.lease_seconds,
            limit=len(instance_ids),
            names=orchestrations.names,
            known_history=orchestrations.cache.known_history(),
            instance_ids=instance_ids,
        )
        if items:
            orchestrations.process(items)
        return len(items)

    def round(self) -> int:
        """One worker round, as a started worker's dispatch loop runs it: record the outcomes
        of the tasks run so far, lock, run and commit turns, lock tasks (held, not run yet),
        all in one transaction. Returns how many turns and tasks it took."""
        before = len(self.held_tasks)
        report = self.worker.rounds.run(start=self.held_tasks.extend)
        return report.turns + report.claimed + len(self.held_tasks) - before

    # -- activities --

    def lock_tasks(self, limit: int = 16) -> int:
        """Lock up to ``limit`` activity tasks and hold them (not run yet)."""
        items = self.store.lock_activities(
            self.worker_id,
            lease_seconds=self.worker.options.lease_seconds,
            limit=limit,
            names=self.worker.activities.names,
        )
        self.held_tasks.extend(items)
        return len(items)

    def run_task(self, index: int = 0) -> bool:
        """Run one held task (the ``index``-th, modulo how many) on this thread; its
        outcome is written by the next :meth:`complete`. False if none is held."""
        if not self.held_tasks:
            return False
        item = self.held_tasks.pop(index % len(self.held_tasks))
        self.worker.activities.run_inline(item)
        return True

    def complete(self) -> None:
        """Write the outcomes of the tasks run so far, in one transaction."""
        self.worker.activities.flush()

    def activities(self, limit: int = 16) -> int:
        """Lock, run and complete up to ``limit`` tasks; return how many ran."""
        count = self.lock_tasks(limit)
        while self.run_task():
            pass
        self.complete()
        return count

    # -- failures --

    def crash(self) -> None:
        """Die: forget every held lease, unwritten result and cached executor, like a killed
        process; a fresh worker object with the same id takes over."""
        self.held_turns, self.held_tasks = [], []
        self.crashes += 1
        counters = self.worker.counters
        self.worker = Worker(self.app, self.store, worker_id=self.worker_id, **self.options)
        self.worker.counters.update(counters)  # the dispatchers share this Counter

    def stats(self) -> dict[str, int]:
        """The worker's counters, across crashes."""
        return self.worker.stats()

    def busy(self) -> bool:
        """True while holding locked work."""
        return bool(self.held_turns or self.held_tasks or self.worker.activities.running)


def drain(
    workers: StepWorker | Sequence[StepWorker],
    clock: FakeClock,
    *,
    max_rounds: int = 1000,
    until: Iterable[str] | None = None,
) -> None:
    """Run the workers round-robin (each runs its held work, then a worker round) until the store has nothing left to do (or, with
    ``until``, until those instances are terminal). When no worker finds work, the clock
    jumps to the next due message, task or lease expiry. Work the workers hold is finished
    first. Raises ``AssertionError`` if that does not settle in ``max_rounds`` rounds."""
    pool = [workers] if isinstance(workers, StepWorker) else list(workers)
    store = pool[0].store
    watched = list(until) if until is not None else None
    for _ in range(max_rounds):
        if watched is not None and _all_terminal(store, watched):
            return
        if work_once(pool):
            continue
        due = next_due(store, clock())
        if due is None:
            if watched is None or _all_terminal(store, watched):
                return
            raise AssertionError(f"nothing left to do but {watched} are not all terminal")
        clock.set(due)
    raise AssertionError(f"the store did not settle in {max_rounds} rounds")


def work_once(workers: Sequence[StepWorker]) -> int:
    """One pass over the workers: each runs the turns and tasks it holds, then a worker
    round. Returns how much work was done (0: none of them found any)."""
    worked = 0
    for w in workers:
        worked += w.run_turns()
        while w.run_task():
            worked += 1
        worked += w.round()
    return worked


def next_due(store: Store, now: float) -> float | None:
    """The time to move a fake clock to when workers find nothing to do at ``now``: just
    past the next due message, task or lease expiry (a second on if that is not later than
    ``now``); None if nothing is waiting for a time at all."""
    due = store.next_visible_at()
    if due is None:
        return None
    return due + 0.001 if due > now else now + 1.0


def _all_terminal(store: Store, instance_ids: list[str]) -> bool:
    for iid in instance_ids:
        record = store.get_instance(iid)
        if record is None or not record.status.is_terminal:
            return False
    return True
