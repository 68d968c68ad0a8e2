"""The activity dispatcher: lock activity tasks, run them, report their outcomes in groups."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from perdure.core.commands import ScheduleActivity
from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    HistoryEvent,
    dumps_checked,
    dumps_event,
    loads_event,
)
from perdure.core.payload import dumps_payload, loads_payload
from perdure.core.registry import App, Registration
from perdure.errors import LeaseLost
from perdure.logs import ids
from perdure.runtime.activity_info import ActivityInfo, reset_activity_info, set_activity_info
from perdure.runtime.leases import LeaseRenewer
from perdure.runtime.observe import ACTIVITY_FAILED, COMPLETED, DISCARDED, LEASE_LOST, Observers
from perdure.runtime.options import WorkerOptions
from perdure.runtime.pool import ThreadPool
from perdure.store.base import ActivityCompletion, ActivityWorkItem, Outcome, Store

log = logging.getLogger("perdure.worker")


@dataclass
class _Running:
    """One run of a locked task. ``renewed_at`` (monotonic) is when its lease was last
    confirmed (taken, or renewed: the time the renewal was sent); ``unanswered`` once the
    store has since failed to answer a renewal of it (or answered only after the lease ran
    out); ``lost`` once a renewal found the lease gone (it is not renewed again)."""

    item: ActivityWorkItem
    started: float
    lease_token: str
    queue_wait: float | None = None  # from queued to started, for the observers
    renewed_at: float = field(init=False)
    unanswered: bool = False
    lost: bool = False

    def __post_init__(self) -> None:
        self.renewed_at = self.started


class ActivityDispatcher:
    """Runs activities for one worker: plain functions on a thread pool, ``async def`` ones on
    a private event loop. Completions are collected and written in one transaction per round;
    each is fenced by its task lease (a stale completion writes nothing)."""

    def __init__(
        self,
        app: App,
        store: Store,
        owner: str,
        options: WorkerOptions,
        clock: Callable[[], float],
        counters: Counter[str],
        wake: Callable[[], None],
        observers: Observers | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.owner = owner
        self.options = options
        self.clock = clock
        self.counters = counters
        self.observers = observers or Observers()
        self._wake = wake
        self.names = frozenset(app.activities)
        self.local_names = frozenset(name for name, reg in app.activities.items() if reg.local)
        self._running: dict[int, _Running] = {}
        self._reserved = 0  # slots reserved for tasks a transaction in flight may take
        self._done: queue.SimpleQueue[ActivityCompletion] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pool = ThreadPool(options.activity_concurrency, "perdure-activity")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._takes_input = {name: _takes_input(reg.fn) for name, reg in app.activities.items()}
        self._renewing_since: float | None = None  # monotonic start of a renewal in progress
        self.renewer = LeaseRenewer(self.renew_leases, options.lease_seconds / 3)
        #: Called on a plain-function activity's thread once its outcome is queued, instead
        #: of waking the dispatch loop: it may run the worker's next round on this thread
        #: and return a task of that round's (with its registration) for the thread to run
        #: next (see :meth:`start_here`); it then also wakes the loop where needed.
        self.round_here: Callable[[], tuple[Registration, ActivityWorkItem] | None] | None = None

    # -- taking work, reporting outcomes --

    @property
    def running(self) -> int:
        """Activities running now."""
        return len(self._running)

    def flush(self) -> None:
        """Write every completion collected so far, in one transaction."""
        completions = self.take_completions()
        if not completions:
            return
        try:
            outcomes = self.store.complete_activities(completions)
        except Exception:
            log.exception("could not record %d activity completions", len(completions))
            self.drop(completions)
            raise
        self.settle(completions, outcomes)

    def take_completions(self) -> list[ActivityCompletion]:
        """Every completion collected so far, for the caller to write."""
        completions: list[ActivityCompletion] = []
        while True:
            try:
                completions.append(self._done.get_nowait())
            except queue.Empty:
                return completions

    def retry_later(self, completions: list[ActivityCompletion]) -> None:
        """The completions could not be written (the round failed, nothing of it was): the
        next round tries again (while their tasks' leases hold, their runs are still ours)."""
        for completion in completions:
            self._done.put(completion)

    def drop(self, completions: list[ActivityCompletion]) -> None:
        """The completions could not be written: nothing was, so the tasks stay locked until
        their leases expire and then run again (at-least-once). Stop tracking their runs."""
        with self._lock:
            for c in completions:
                self._forget(c)

    def settle(self, completions: list[ActivityCompletion], outcomes: list[Outcome]) -> None:
        """Account for each written completion's outcome (counters and logs)."""
        discarded: list[_Running | None] = []
        observed: list[tuple[str, str, float, float | None]] = []
        with self._lock:
            for completion, outcome in zip(completions, outcomes, strict=True):
                running = self._forget(completion)
                name = running.item.name if running else "?"
                if self.observers.active:
                    observed.append((name, _observed(completion, outcome), completion.duration, _wait_of(running)))
                if outcome is Outcome.OK:
                    self.counters["activities"] += 1
                elif outcome is Outcome.LEASE_LOST:
                    # Another worker took the task over after our lease expired; its run stands.
                    self.counters["activities_lease_lost"] += 1
                    if self._expired_in_outage(running):
                        self.counters["activities_lease_expired_in_outage"] += 1
                        log.warning(
                            "lease expired during a store outage on activity %r (task row %d): the "
                            "store answered this worker's renewals only after the %g s lease had run "
                            "out, and the task was taken over; this result was dropped, nothing written",
                            name,
                            completion.task_row_id,
                            self.options.lease_seconds,
                            extra=_ids_of(running),
                        )
                    else:
                        log.warning(
                            "lease lost on activity %r (task row %d): another worker took it over; "
                            "this result was dropped, nothing written",
                            name,
                            completion.task_row_id,
                            extra=_ids_of(running),
                        )
                else:
                    self.counters["activities_discarded"] += 1
                    discarded.append(running)
        for running in discarded:
            self._explain_discard(running)
        for name, how, seconds, wait in observed:
            self.observers.on_activity(name, how, seconds, wait)

    def start(self, items: list[ActivityWorkItem]) -> None:
        """Start running locked tasks (on the pool, or the event loop for ``async def``)."""
        for item in items:
            self._start(item)

    def start_here(self, items: list[ActivityWorkItem]) -> tuple[Registration, ActivityWorkItem] | None:
        """Start ``items`` as :meth:`start` does, except the first plain-function one: it is
        returned, with its registration, for the calling activity thread to run next."""
        here = None
        for item in items:
            registration = self.app.activities.get(item.name)
            if here is None and registration is not None and not registration.is_async:
                with self._lock:
                    self._running[item.task_row_id] = self._run_of(item)
                here = (registration, item)
            else:
                self._start(item)
        return here

    def running_rows(self) -> list[int]:
        """The task rows this worker is running (or has results of, not yet written): a
        round must never lock them again (:attr:`perdure.store.base.RoundRequest.running_tasks`)."""
        with self._lock:
            return list(self._running)

    def running_names(self) -> list[str]:
        """The names of the activities running now, one per run."""
        with self._lock:
            return [r.item.name for r in self._running.values()]

    @property
    def free(self) -> int:
        """How many more activities may start now (slots neither running nor reserved)."""
        return max(0, self.options.activity_concurrency - len(self._running) - self._reserved)

    @contextmanager
    def reserve(self, limit: int, *, freed: int = 0) -> Iterator[int]:
        """Reserve room for up to ``limit`` tasks that a transaction may take for this worker
        (``freed``: slots the outcomes it writes give back), and yield how many; the tasks it
        took must be started (:meth:`start`, :meth:`start_here`) within the block. Rounds on
        other threads and eager starts see the room as taken from the moment it is reserved:
        together they never take more tasks than ``activity_concurrency`` allows, though
        the tasks of each are counted as running only once its commit returned them."""
        with self._lock:
            room = max(0, min(limit, self.free + freed))
            self._reserved += room
        try:
            yield room
        finally:
            with self._lock:
                self._reserved -= room

    def _forget(self, completion: ActivityCompletion) -> _Running | None:
        """Stop tracking the run that produced ``completion`` (caller holds the lock). Only
        the run with the completion's token is retired: should the entry ever be a newer run
        of the same task (another token), it stays, so that run's lease is still renewed
        (rounds never lock a task this worker runs, see :meth:`running_rows`)."""
        running = self._running.get(completion.task_row_id)
        if running is None or running.lease_token != completion.lease_token:
            return None
        return self._running.pop(completion.task_row_id)

    def _explain_discard(self, running: _Running | None) -> None:
        """Count and log why a completion was discarded: the instance had ended (terminated,
        completed or failed: ``activities_instance_terminal``) or the execution that
        scheduled it had continued as new (``activities_execution_ended``). Never confused
        with a lost lease: the store wrote a discard record."""
        if running is None:
            self.counters["activities_instance_terminal"] += 1
            return
        item = running.item
        try:
            instance = self.store.get_instance(item.instance_id)
        except Exception:  # only the log line is at stake
            instance = None
        if instance is not None and not instance.status.is_terminal:
            self.counters["activities_execution_ended"] += 1
            log.info(
                "activity %r (task %d) of instance %r finished after execution %d had ended "
                "(continued as new): result discarded and recorded",
                item.name,
                item.task_id,
                item.instance_id,
                item.execution_id,
            )
            return
        self.counters["activities_instance_terminal"] += 1
        state = instance.status.value if instance is not None else "gone (purged)"
        log.info(
            "activity %r (task %d) of instance %r finished after the instance was %s: result discarded and recorded",
            item.name,
            item.task_id,
            item.instance_id,
            state,
        )

    # -- running one activity --

    def run_inline(self, item: ActivityWorkItem) -> None:
        """Run a locked task on the calling thread and queue its outcome for the next
        :meth:`flush`, instead of starting it on the pool (tests that drive a worker step by
        step use it; ``async def`` activities run in a private event loop)."""
        registration = self.app.activities.get(item.name)
        if registration is None:
            self._hand_back(item)
            return
        with self._lock:
            self._running[item.task_row_id] = self._run_of(item)
        if registration.is_async:
            asyncio.run(self._run_async(registration, item))
        else:
            self._run_sync(registration, item)

    def _start(self, item: ActivityWorkItem) -> None:
        registration = self.app.activities.get(item.name)
        if registration is None:
            self._hand_back(item)
            return
        with self._lock:
            self._running[item.task_row_id] = self._run_of(item)
        if registration.is_async:
            future = asyncio.run_coroutine_threadsafe(self._run_async(registration, item), self._event_loop())
            future.add_done_callback(lambda f: f.exception())  # errors are handled inside
        else:
            self._pool.submit(self._run_sync, registration, item)

    def _run_of(self, item: ActivityWorkItem) -> _Running:
        wait = max(0.0, self.clock() - item.enqueued_at) if self.observers.active else None
        return _Running(item, time.monotonic(), item.lease_token, wait)

    def _hand_back(self, item: ActivityWorkItem) -> None:
        """A task of an activity this worker does not register (the store takes only
        registered names, so this is a guard): release it for a worker that has it. Absence
        is not failure: the task waits, and diagnosis names the missing worker."""
        log.error("activity task %d (%r) is not registered in this worker; released", item.task_row_id, item.name)
        with contextlib.suppress(LeaseLost):
            self.store.abandon_activity(item.task_row_id, item.lease_token)

    def run_on_thread(self, work: Callable[[], tuple[Registration, ActivityWorkItem] | None]) -> bool:
        """Run ``work`` on an activity thread at once (one that is idle, or a new one), then the
        task it returns (as :meth:`start_here` returns one) on the same thread, as an
        activity's thread runs the next step; False (nothing done) if every thread is busy
        and no more may start at once (:meth:`ThreadPool.submit_now`)."""
        return self._pool.submit_now(self._run_then, work)

    def _run_then(self, work: Callable[[], tuple[Registration, ActivityWorkItem] | None]) -> None:
        here = work()
        if here is not None:
            self._run_sync(*here)

    def _run_sync(self, registration: Registration, item: ActivityWorkItem) -> None:
        # A loop, not a recursion: each round run here may hand this thread the next step.
        next_here: tuple[Registration, ActivityWorkItem] | None = (registration, item)
        while next_here is not None:
            registration, item = next_here
            started = time.perf_counter()
            outcome = self._call_sync(registration, item)
            self._finish(item, outcome, time.perf_counter() - started, wake=self.round_here is None)
            next_here = self.round_here() if self.round_here is not None else None

    async def _run_async(self, registration: Registration, item: ActivityWorkItem) -> None:
        started = time.perf_counter()
        outcome = await self._call_async(registration, item)
        self._finish(item, outcome, time.perf_counter() - started)

    def _call_sync(
        self, registration: Registration, item: ActivityWorkItem, local: bool = False
    ) -> tuple[HistoryEvent, str]:
        token = set_activity_info(self._info(item))
        end = self.observers.activity_started(item, local=local) if self.observers.active else None
        outcome: tuple[HistoryEvent, str] | None = None
        try:
            result = registration.fn(item.input) if self._takes_input[item.name] else registration.fn()
            outcome = self._completed(item, result)
        except BaseException as exc:
            outcome = self._raised(item, exc)
        finally:
            if end is not None and outcome is not None:
                end(outcome[0])
            reset_activity_info(token)
        return outcome

    async def _call_async(
        self, registration: Registration, item: ActivityWorkItem, local: bool = False
    ) -> tuple[HistoryEvent, str]:
        token = set_activity_info(self._info(item))
        end = self.observers.activity_started(item, local=local) if self.observers.active else None
        outcome: tuple[HistoryEvent, str] | None = None
        try:
            args = (item.input,) if self._takes_input[item.name] else ()
            outcome = self._completed(item, await registration.fn(*args))
        except BaseException as exc:
            outcome = self._raised(item, exc)
        finally:
            if end is not None and outcome is not None:
                end(outcome[0])
            reset_activity_info(token)
        return outcome

    # -- local activities --

    def is_local(self, name: str) -> bool:
        """Whether ``name`` is a local activity registered in this worker."""
        return name in self.local_names

    def run_local(self, instance_id: str, execution_id: int, task: ScheduleActivity) -> tuple[HistoryEvent, str]:
        """Run local activity ``task`` of the given execution now, on the calling thread (an
        ``async def`` one on the private event loop, waited for), and return its completion
        event as the orchestration's replay will read it back from the store, with that
        stored JSON (the store writes it as is).

        Nothing is stored here: the caller commits the event with the turns around it, or
        drops it whole, and then the activity runs again (at-least-once)."""
        registration = self.app.activities[task.name]
        # Its input as an ordinary task would get it: decoded from JSON, never the
        # orchestrator's own object (which the activity could otherwise mutate).
        data = loads_payload(dumps_payload(task.input, what=f"input of activity {task.name!r}"))
        item = ActivityWorkItem(  # no task row and no lease: the instance's lease covers it
            task_row_id=0,
            instance_id=instance_id,
            execution_id=execution_id,
            task_id=task.task_id,
            name=task.name,
            input=data,
            attempt=task.attempt,
            lease_token="",
            lease_expires_at=0.0,
            enqueued_at=0.0,
            delivery_count=1,
        )
        started = time.perf_counter()
        if registration.is_async:
            coro = self._call_async(registration, item, local=True)
            if self.observers.active:  # the event loop's task runs in a copy of this context
                coro = _in_context(contextvars.copy_context(), coro)
            future = asyncio.run_coroutine_threadsafe(coro, self._event_loop())
            _, text = future.result()
        else:
            _, text = self._call_sync(registration, item, local=True)
        self.counters["local_activities"] += 1
        if self.observers.active:
            self.observers.on_local_activity(task.name, time.perf_counter() - started)
        return loads_event(text), text

    def _completed(self, item: ActivityWorkItem, result: Any) -> tuple[HistoryEvent, str]:
        """The completion event and its JSON, encoded here, on the activity's thread: a result
        that is not JSON fails as the activity's own error, and the dispatch loop does not
        have to encode it again."""
        event = ActivityCompleted(task_id=item.task_id, result=result, timestamp=self.clock())
        what = f"result of activity {item.name!r}"
        text = dumps_checked(event, what)
        limit = self.options.max_payload_bytes
        if len(text) > limit // 4:  # a UTF-8 character is at most 4 bytes: only then measure exactly
            dumps_payload(result, what=what, limit=limit)  # raises SerializationError: this attempt fails
        return event, text

    def _raised(self, item: ActivityWorkItem, exc: BaseException) -> tuple[HistoryEvent, str]:
        """The activity raised: one log line (the traceback is stored with the failure)."""
        log.warning(
            "activity %r failed on attempt %d: %s: %s",
            item.name,
            item.attempt,
            type(exc).__name__,
            exc,
            extra=ids(item.instance_id, item.execution_id, item.task_id),
        )
        return self._failed(item, Failure.from_exception(exc))

    def _failed(self, item: ActivityWorkItem, failure: Failure) -> tuple[HistoryEvent, str]:
        event = ActivityFailed(task_id=item.task_id, failure=failure, timestamp=self.clock())
        return event, dumps_event(event)

    def _finish(
        self, item: ActivityWorkItem, outcome: tuple[HistoryEvent, str], duration: float, *, wake: bool = True
    ) -> None:
        """Queue the outcome for the next round; ``wake`` the dispatch loop for it."""
        event, text = outcome
        self._done.put(
            ActivityCompletion(
                item.task_row_id,
                item.lease_token,
                event,
                duration,
                text,
                instance_id=item.instance_id,
                run_id=item.run_id,
                execution_id=item.execution_id,
            )
        )
        if wake:
            self._wake()

    def _info(self, item: ActivityWorkItem) -> ActivityInfo:
        return ActivityInfo(item.instance_id, item.execution_id, item.task_id, item.name, item.attempt, self.owner)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(
                target=self._loop.run_forever, name="perdure-activity-loop", daemon=True
            )
            self._loop_thread.start()
        return self._loop

    # -- leases --

    def renew_leases(self) -> None:
        """Renew the leases of the running activities (the :attr:`renewer` thread calls this
        every third of the lease). Raises if the store did not answer; the runs then remember
        it, to tell a lease that expired during a store outage from one another worker took
        over. A lease found lost is counted and logged once, and not renewed
        again (the run goes on; its result will be refused)."""
        sent = time.monotonic()
        with self._lock:
            leases = [(row_id, r.lease_token) for row_id, r in self._running.items() if not r.lost]
            if not leases:
                return
            self._renewing_since = sent
        try:
            held = self.store.renew_activity_leases(leases, self.options.lease_seconds)
        except BaseException:
            with self._lock:
                self._renewing_since = None
                for run in self._runs_of(leases):
                    if run is not None:
                        run.unanswered = True
            raise
        answered = time.monotonic()
        lost: list[tuple[_Running, bool]] = []
        with self._lock:
            self._renewing_since = None
            for run, ok in zip(self._runs_of(leases), held, strict=True):
                if run is None:
                    continue  # finished and recorded meanwhile
                if ok:
                    run.renewed_at, run.unanswered = sent, False
                    continue
                if sent < run.renewed_at + self.options.lease_seconds <= answered:
                    run.unanswered = True  # the store answered only after the lease ran out
                run.lost = True
                lost.append((run, self._expired_in_outage(run)))
        for run, outage in lost:
            self.counters["activity_leases_lost"] += 1
            if self.observers.active:
                self.observers.on_lease_lost("activity")
            how = "expired during a store outage" if outage else "was lost"
            log.warning(
                "lease on activity %r (task row %d) %s while it ran; its result will be dropped",
                run.item.name,
                run.item.task_row_id,
                how,
                extra=_ids_of(run),
            )

    def _runs_of(self, leases: list[tuple[int, str]]) -> list[_Running | None]:
        """The runs still tracked with these leases (caller holds the lock)."""
        runs = [self._running.get(row_id) for row_id, _ in leases]
        return [r if r is not None and r.lease_token == t else None for r, (_, t) in zip(runs, leases, strict=True)]

    def _expired_in_outage(self, run: _Running | None) -> bool:
        """Whether ``run``'s lease ran out because the store did not answer this worker's
        renewals: an attempt failed since the last one that went through, or one was still
        waiting for the store when the lease ran out (caller holds the lock)."""
        if run is None:
            return False
        if run.unanswered:
            return True
        waiting = self._renewing_since
        return waiting is not None and waiting < run.renewed_at + self.options.lease_seconds <= time.monotonic()

    # -- shutdown --

    def shutdown(self, timeout: float) -> None:
        """Let running activities finish for up to ``timeout`` seconds, report them, and
        release the leases of those still running so another worker can take them."""
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            self.flush()
            time.sleep(0.005)
        self.flush()
        self.renewer.stop()  # before the leftovers' leases are released
        with self._lock:
            leftovers = list(self._running.values())
            self._running.clear()
        if leftovers:
            log.warning(
                "%d activities still running after the %g s shutdown timeout (%s): their leases are "
                "released, and another worker runs them again",
                len(leftovers),
                timeout,
                ", ".join(sorted(r.item.name for r in leftovers)),
            )
        for running in leftovers:
            with contextlib.suppress(LeaseLost):
                self.store.abandon_activity(running.item.task_row_id, running.lease_token)
        self._pool.shutdown()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=1.0)
            if not self._loop.is_running():
                self._loop.close()


def _ids_of(running: _Running | None) -> dict[str, Any]:
    """The log record ids of a run (all None if unknown)."""
    item = None if running is None else running.item
    return ids(None) if item is None else ids(item.instance_id, item.execution_id, item.task_id)


def _observed(completion: ActivityCompletion, outcome: Outcome) -> str:
    """How an activity attempt ended, for the observers."""
    if outcome is Outcome.OK:
        return ACTIVITY_FAILED if isinstance(completion.event, ActivityFailed) else COMPLETED
    return LEASE_LOST if outcome is Outcome.LEASE_LOST else DISCARDED


def _wait_of(running: _Running | None) -> float | None:
    return None if running is None else running.queue_wait


async def _in_context(context: contextvars.Context, coro: Any) -> Any:
    """Await ``coro`` in a task that runs in ``context`` (the caller's context variables)."""
    return await asyncio.get_running_loop().create_task(coro, context=context)


def _takes_input(fn: Callable[..., Any]) -> bool:
    """Whether an activity accepts its input argument (one taking none is called bare)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
