"""A worker round: run the turns of the instances in hand, then one store transaction
(:meth:`Store.run_round`) commits them, records the activities that finished, and locks
the instances and activity tasks that come next.

No orchestration code runs inside the transaction (invariant 10): the turns run before it,
on the instances the previous round locked and on the instances this worker holds, with
the outcomes of their activities handed over (:mod:`perdure.runtime.held`). So a
sequential step (an activity, then the turn its outcome wakes, which schedules the next
activity) costs one transaction: the turn's commit records the outcome, and takes the
next task. Each part keeps its own fencing (invariants 1 and 2).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable

from perdure.core.records import frozen_record
from perdure.runtime.activities import ActivityDispatcher
from perdure.runtime.handed import HandedStart, HandedStarts
from perdure.runtime.held import HeldLease
from perdure.runtime.options import WorkerOptions
from perdure.runtime.orchestrations import OrchestrationDispatcher, TurnBatch
from perdure.store.base import (
    ActivityCompletion,
    ActivityWorkItem,
    OrchestrationWorkItem,
    Outcome,
    RoundRequest,
    RoundResult,
    Store,
    TurnCommit,
)
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS, Notifier


@frozen_record
class RoundReport:
    """What a round did and found: how many turns it committed, how many instances it locked
    for the next round (``claimed``), whether it hit a limit (more work
    is probably waiting), and when work it could take comes due (``None``: nothing queued
    it can see). Work that was due when the round looked at its queue and was not taken is
    work this worker cannot take (another worker's names, no room): it is left out; work
    that came due while the round ran is in (``next_due`` then lies in the past)."""

    turns: int
    claimed: int
    busy: bool
    next_due: float | None


class RoundRunner:
    """Runs one dispatch loop's worker rounds with the worker's two dispatchers. It keeps
    the instances its last round locked (``claimed``) until the next round runs them."""

    def __init__(
        self,
        store: Store,
        owner: str,
        options: WorkerOptions,
        orchestrations: OrchestrationDispatcher,
        activities: ActivityDispatcher,
        handed: HandedStarts | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.options = options
        self.orchestrations = orchestrations
        self.activities = activities
        self.handed = handed or HandedStarts()
        self.claimed: list[OrchestrationWorkItem] = []
        #: Held by whichever thread runs a round: the dispatch loop's, or an activity's
        #: (:meth:`perdure.runtime.worker.Worker`'s ``_round_here``).
        self.lock = threading.Lock()
        #: When the dispatch loop wakes up by itself (store clock) while it sleeps; None
        #: while it is awake.
        self.wakes_at: float | None = None
        clock = getattr(store, "clock", time.time)
        self.looks = LookOut(store.notifier, ORCHESTRATIONS, options.poll_interval, clock)
        self.task_looks = LookOut(store.notifier, ACTIVITIES, options.poll_interval, clock)

    def run(self, start: Callable[[list[ActivityWorkItem]], None] | None = None) -> RoundReport:
        """One round; raises if the store write failed (then nothing of it was written, and
        the turns run for it are forgotten). The tasks it locked are started on the
        activity pool, or handed to ``start``."""
        with self.handed.taken() as handed_starts:
            for handed in handed_starts:
                handed.run(lambda h: self._start(h, start))
        completions = self.activities.take_completions()
        claimed, self.claimed = self.claimed, []
        items, taken = self.orchestrations.held.hand_over(claimed, completions)
        turns = TurnBatch(self.orchestrations, keep_leases=True, defer=True)
        if items:
            turns(items)
        # The room for tasks is reserved until the tasks taken are started (eager starts and
        # rounds on other threads see it as taken). The outcomes this round writes free their
        # slots once it commits: it may take that many more tasks (a worker at its limit
        # would else leave a queued task for a later look).
        with self.activities.reserve(self.options.batch_size, freed=len(completions)) as room:
            written = self._write(completions, claimed, taken, turns, room, start)
        if written is None:
            return RoundReport(0, 0, busy=False, next_due=self._due())
        return self._report(*written)

    def _write(
        self,
        completions: list[ActivityCompletion],
        claimed: list[OrchestrationWorkItem],
        taken: dict[str, HeldLease],
        turns: TurnBatch,
        room: int,
        start: Callable[[list[ActivityWorkItem]], None] | None,
    ) -> tuple[RoundRequest, RoundResult] | None:
        """The rest of :meth:`run`, with ``room`` for tasks reserved: its transaction, and the
        start of the tasks it took; None if it had nothing to write."""
        commits = [run.commit for run in turns.runs]
        look = self.looks.begin(any(_sends_messages(c) for c in commits))
        # With room and no cause to look at the task queue, the tasks the turns schedule
        # are taken as they are written; a round that looks at neither queue reads no due
        # times (the look-outs keep what earlier rounds read).
        look_tasks = room > 0 and self.task_looks.begin()
        if not (commits or completions or turns.deferred or look or look_tasks):
            # Nothing to write, and nothing can have come (a loop woken for starts handed
            # over, which committed themselves): no transaction.
            return None
        request = RoundRequest(
            owner=self.owner,
            lease_seconds=self.options.lease_seconds,
            commits=commits,
            completions=completions,
            orchestration_limit=max(0, self.options.batch_size - len(turns.deferred)) if look else 0,
            orchestration_names=self.orchestrations.names,
            known_history=self.orchestrations.cache.known_history(),
            held=self.orchestrations.held.tokens(),
            activity_limit=room if look_tasks else 0,
            activity_names=self.activities.names,
            # Never our own runs, even with leases that expired while the store was away.
            running_tasks=self.activities.running_rows(),
            due_within=self.options.poll_interval,
            take_scheduled=0 if look_tasks else room,
            due_times=look or look_tasks,
        )
        try:
            result = self.store.run_round(request)
        except Exception:
            # Nothing of the round was written: what it held is still held, and is tried
            # again by the next round (the turns run again, from a full replay).
            turns.void()
            self.claimed = claimed
            self.orchestrations.held.restore(taken)
            self.activities.retry_later(completions)
            raise
        self.activities.settle(completions, result.completions)
        turns.settle(result.turns)
        # A turn refused with outcomes handed over most likely met messages queued before
        # them (they were queued behind those): the lease is still held, to take it again.
        refused = {r.commit.instance_id for r, o in zip(turns.runs, result.turns, strict=True) if o is not Outcome.OK}
        self.orchestrations.held.restore({iid: held for iid, held in taken.items() if iid in refused})
        self.looks.end(
            look,
            seen_at=result.messages_seen_at,
            filled=len(result.locked) >= request.orchestration_limit,
            due=result.next_message_at if request.due_times else None,
            again=bool(refused),
        )
        if room > 0:
            self.task_looks.end(
                look_tasks,
                seen_at=result.tasks_seen_at,
                filled=len(result.activities) >= request.activity_limit,
                due=result.next_task_at if request.due_times else None,
            )
        # Turns deferred by the local-activity budget run first next round, under the same leases.
        self.claimed = [*turns.deferred, *result.locked]
        (start or self.activities.start)(result.activities)
        return request, result

    def _start(self, handed: HandedStart, start: Callable[[list[ActivityWorkItem]], None] | None) -> None:
        """Run a start handed over by a client of this process (:mod:`perdure.runtime.handed`);
        the tasks its first turn takes go to ``start``, as a round's do."""
        self.orchestrations.start_eagerly(
            handed.instance,
            replace_terminal=handed.replace_terminal,
            request_id=handed.request_id,
            counter="handed_starts",
            start=start,
        )

    def sleeps_past(self, report: RoundReport) -> bool:
        """Whether the dispatch loop, asleep or about to sleep, would wake up after work
        that ``report`` (of a round run on another thread) says is waiting or comes due."""
        wakes_at = self.wakes_at
        return report.busy or wakes_at is None or (report.next_due is not None and report.next_due < wakes_at)

    def release(self) -> None:
        """Give back the leases of the instances claimed but not run, and the starts handed
        over but not run (a stopping worker)."""
        with self.handed.taken() as handed_starts:
            for handed in handed_starts:
                handed.give_back()
        claimed, self.claimed = self.claimed, []
        for item in claimed:
            with contextlib.suppress(Exception):  # else the lease expires
                self.store.abandon_orchestration(item.instance.instance_id, item.lease_token)

    def _report(self, request: RoundRequest, result: RoundResult) -> RoundReport:
        # Instances claimed now are run by the next round at once: the loop must not sleep.
        busy = bool(self.claimed) or (request.activity_limit > 0 and len(result.activities) >= request.activity_limit)
        return RoundReport(len(result.turns), len(self.claimed), busy, self._due())

    def _due(self) -> float | None:
        """When work a look-out saw comes due (the activity queue's only with room)."""
        due = [self.looks.due, self.task_looks.due if self.activities.free > 0 else None]
        return min((at for at in due if at is not None), default=None)


class LookOut:
    """Decides whether a round looks at one queue (``topic``: the orchestration queue, for
    instances to lock, or the activity queue, for tasks to lock).

    Where the store signals every process's commits (:attr:`Notifier.every_process`), a
    round looks only when something may have come: a signal of the queue since the last
    look, work the last look saw coming due, a last look that filled its limit, a turn
    refused (messages came before its outcomes), a cause the round knows of (``must``: its
    turns send messages, start children or end a child instance, whose start or parent's
    message the same transaction then locks), or ``poll_interval`` since the last look.
    Rounds that do not look lock nothing from the queue, which spares a statement; on
    PostgreSQL a round trip for the orchestration queue (the reads go with the COMMIT).
    Elsewhere every round looks. A round that looks at the activity queue takes the tasks
    its turns schedule from it, oldest first with the rest; one that does not takes them as
    they are written (:attr:`~perdure.store.base.RoundRequest.take_scheduled`), and one that
    looks at neither reads no due times: every queue its writes put work in is signalled,
    which makes the next round look.

    :attr:`seen_at` is when the last look read the queue (store clock): work due by then and
    not taken is work this worker cannot take (another worker's names, a full batch); work
    that came due since is taken by the next round, even if a round that did not look is
    the one that finds it due (:attr:`due`).
    """

    def __init__(self, notifier: Notifier, topic: str, poll_interval: float, clock: Callable[[], float]) -> None:
        self.notifier = notifier
        self.topic = topic
        self.poll_interval = poll_interval
        self.clock = clock
        self._signals: int | None = None  # the queue's signal count before the last look
        self._looked_at = (-math.inf, -math.inf)  # monotonic, and store clock
        self._due = math.inf  # when work seen since the last look comes due (store clock)
        self.seen_at = -math.inf  # when the last look read the queue (store clock)
        self._again = True
        self._pending_signals = 0

    @property
    def due(self) -> float | None:
        """When work a round saw since the last look comes due (store clock), or None."""
        return None if self._due == math.inf else self._due

    def begin(self, must: bool = False) -> bool:
        """Whether the round about to run looks (call before it opens its transaction);
        ``must``: the round has a cause of its own."""
        self._pending_signals = self.notifier.version(self.topic)
        return (
            not self.notifier.every_process
            or must
            or self._again
            or self._pending_signals != self._signals
            or self._since_look() >= self.poll_interval
            or self.clock() >= self._due
        )

    def _since_look(self) -> float:
        # By either clock: the store's may stand still (a test's) or jump back.
        monotonic, store = self._looked_at
        return max(time.monotonic() - monotonic, self.clock() - store)

    def end(self, looked: bool, *, seen_at: float, filled: bool, due: float | None, again: bool = False) -> None:
        """Take note of what the round saw: whether it ``looked`` (when: ``seen_at``; and
        whether it took as much as it asked for: ``filled``), when the queue's next work
        comes due if the round read it (``due``); ``again``: the next round must look."""
        if looked:
            self._signals = self._pending_signals
            self._looked_at = (time.monotonic(), self.clock())
            self._due = math.inf
            self.seen_at = seen_at
            again = again or filled
        self._again = again
        # Work due when the last look read the queue, and not taken, is work this worker
        # cannot take. Work due since came due after it: a round that did not look (it had
        # decided before it read the clock) leaves that to the next round, which looks.
        if due is not None and due > self.seen_at:
            self._due = min(self._due, due)


def _sends_messages(commit: TurnCommit) -> bool:
    """Whether a turn's commit may queue orchestration messages (to itself, its children or,
    ending an instance that may have one, its parent: :attr:`TurnCommit.may_report`)."""
    return bool(
        commit.messages
        or commit.children
        or commit.continue_as_new
        or (commit.may_report and commit.status.is_terminal)
    )
