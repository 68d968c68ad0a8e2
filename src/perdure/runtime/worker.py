"""The Worker: runs orchestration turns and activities against a store."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from perdure.core.registry import App, Registration, version_key
from perdure.errors import InvalidInputError, PerdureError
from perdure.runtime import eager
from perdure.runtime.activities import ActivityDispatcher
from perdure.runtime.activity_info import running_activity
from perdure.runtime.cache import ExecutorCache
from perdure.runtime.handed import HandedStart, HandedStarts
from perdure.runtime.observe import Observers, WorkerObserver
from perdure.runtime.options import WorkerOptions
from perdure.runtime.orchestrations import OrchestrationDispatcher
from perdure.runtime.rounds import RoundReport, RoundRunner
from perdure.store.base import ActivityWorkItem, NewInstance, Store, WorkerRecord
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS

log = logging.getLogger("perdure.worker")

_ERROR_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
#: How often the housekeeping thread sweeps retention (seconds).
SWEEP_INTERVAL = 60.0
#: How long a client operation's request id is remembered (seconds): far longer than any
#: retry of an operation whose commit outcome was unknown.
REQUEST_RETENTION = 86_400.0


class Worker:
    """Runs the orchestrations and activities of ``app`` from ``store``.

    Use it as a context manager (``with Worker(app, store): ...``), with ``start()`` /
    ``stop()``, or from asyncio (``async with Worker(...)`` or ``await worker.run()``).
    Settings are the fields of :class:`WorkerOptions`, passed as keyword arguments.

    ``observers``: :class:`~perdure.runtime.observe.WorkerObserver` objects told of turns,
    activities, lost leases and store calls as they happen: metrics and tracing
    (:class:`perdure.observability.PrometheusMetrics`,
    :class:`perdure.observability.OpenTelemetryTracing`). None by default, at no cost.

    Threads: ``orchestration_concurrency`` dispatch loops, each running rounds (one store
    transaction records finished activities, runs and commits the due turns and takes new
    activity tasks: :mod:`perdure.runtime.rounds`); the activity pool (and an event loop
    for ``async def`` activities); one thread renewing the leases of running activities
    (:mod:`perdure.runtime.leases`); one housekeeping thread (heartbeat, retention sweeps).
    Idle loops sleep until the store signals new work in this process, an activity
    finishes, the next timer or retry is due, or ``poll_interval`` passes.
    """

    def __init__(
        self,
        app: App,
        store: Store,
        *,
        worker_id: str | None = None,
        observers: Sequence[WorkerObserver] = (),
        **options: Any,
    ) -> None:
        if not isinstance(app, App):
            raise InvalidInputError(f"Worker needs a perdure.App, got {type(app).__name__}")
        self.app = app
        self.store = store
        self.options = WorkerOptions(**options)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            self.observers = Observers(list(observers))
        except TypeError as exc:
            raise InvalidInputError(str(exc)) from None
        self.observers.attach(self)
        # The store as the worker's own work reaches it: wrapped by observers that time it.
        store = self._store = self.observers.wrap_store(store)
        self.clock: Callable[[], float] = getattr(store, "clock", time.time)
        self.counters: Counter[str] = Counter()
        self.cache = ExecutorCache(self.options.cache_size)
        self._stop = threading.Event()
        self._starts = threading.Condition()  # guards the count of eager and handed starts in progress
        self._starts_running = 0
        self._stop_topic = f"stop:{self.worker_id}"
        self._done_topic = f"done:{self.worker_id}"
        self._threads: list[threading.Thread] = []
        self._started_at = 0.0
        self._shutdown_timeout = self.options.shutdown_timeout
        self.activities = ActivityDispatcher(
            app,
            store,
            self.worker_id,
            self.options,
            self.clock,
            self.counters,
            wake=lambda: store.notifier.notify(self._done_topic),
            observers=self.observers,
        )
        self.orchestrations = OrchestrationDispatcher(
            app,
            store,
            self.worker_id,
            self.options,
            self.cache,
            self.clock,
            self.counters,
            self.activities,
            self.observers,
        )
        # Starts made in this process, handed to a dispatch loop that waits for work.
        self.handed = HandedStarts()
        # One runner per dispatch loop: each keeps the instances its last round locked.
        self._runners = [
            RoundRunner(store, self.worker_id, self.options, self.orchestrations, self.activities, self.handed)
            for _ in range(self.options.orchestration_concurrency)
        ]
        self.rounds = self._runners[0]
        self.activities.round_here = self._round_here

    # -- lifecycle --

    def start(self) -> Worker:
        """Start the worker's threads and return at once."""
        if self._threads:
            raise RuntimeError("worker already started")
        self._stop.clear()
        self._started_at = self.clock()
        self._heartbeat()
        threads = [
            threading.Thread(target=self._dispatch_loop, args=(runner,), name=f"perdure-dispatch-{i}", daemon=True)
            for i, runner in enumerate(self._runners)
        ]
        threads.append(threading.Thread(target=self._housekeeping_loop, name="perdure-housekeeping", daemon=True))
        self._threads = threads
        for thread in threads:
            thread.start()
        self.activities.renewer.start()
        eager.register(self)
        log.info(
            "worker %s started: %d orchestrations, %d activities registered",
            self.worker_id,
            len(self.app.orchestrations),
            len(self.app.activities),
        )
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: finish the turns in hand, let running activities finish for up to
        ``timeout`` (default ``shutdown_timeout``) and release the leases of the rest."""
        if not self._threads:
            return
        running = running_activity()
        if running is not None and running.worker_id == self.worker_id:
            # It would wait for the very activity that called it (a local one: forever).
            raise PerdureError(
                f"Worker.stop() was called from inside activity {running.name!r}, which this "
                f"worker runs; stop the worker from outside its activities"
            )
        self._shutdown_timeout = self.options.shutdown_timeout if timeout is None else timeout
        eager.unregister(self)
        with self._starts:  # no eager or handed start begins after this; those running finish first
            self._stop.set()
            self._starts.wait_for(lambda: self._starts_running == 0)
        self.store.notifier.notify(self._stop_topic)
        for thread in self._threads:
            thread.join()
        self._threads = []
        for runner in self._runners:
            with runner.lock:  # after a round an activity's thread may be running
                runner.release()
        self.activities.shutdown(self._shutdown_timeout)
        self.orchestrations.release_held()
        try:
            self._store.remove_worker(self.worker_id)
        except Exception:  # the store may already be gone; the row then just ages out
            log.debug("could not remove worker row", exc_info=True)
        log.info("worker %s stopped", self.worker_id)

    @property
    def is_running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return bool(self._threads)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Worker:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    async def run(self) -> None:
        """Run until cancelled (for asyncio applications): ``asyncio.create_task(worker.run())``."""
        import asyncio

        self.start()
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await asyncio.to_thread(self.stop)

    def start_eagerly(
        self, instance: NewInstance, *, replace_terminal: bool = False, request_id: str | None = None
    ) -> bool:
        """Create ``instance`` and run its first turn in the calling thread, committed
        together (see :mod:`perdure.runtime.eager`); False (nothing done) if this worker is
        not running or does not serve the orchestration. ``Client.start(..., eager=True)``
        calls this; ``stop()`` waits for eager starts in progress."""
        if version_key(instance.name, instance.version) not in self.orchestrations.names:
            return False
        with self._starting() as admitted:
            if admitted:
                self.orchestrations.start_eagerly(instance, replace_terminal=replace_terminal, request_id=request_id)
            return admitted

    def hand_start(
        self, instance: NewInstance, *, replace_terminal: bool = False, request_id: str | None = None
    ) -> HandedStart | None:
        """Hand ``instance``'s start to this worker while a dispatch loop of its waits for work:
        a round on an idle activity thread (else on that loop) creates it and runs its first
        turn in one transaction (see :mod:`perdure.runtime.handed`). Returns the start as
        handed over, without waiting for it (:meth:`HandedStart.result` waits; a start that
        ends without running, failed or given back, also signals
        :data:`~perdure.runtime.handed.UNRUN_STARTS`); None (nothing done) if this worker is
        not running, does not serve the orchestration or has no dispatch loop waiting for
        work (or ``run_local_starts`` is off). ``Client.start`` and ``Client.run`` call this."""
        if not self.options.run_local_starts:
            return None
        if version_key(instance.name, instance.version) not in self.orchestrations.names:
            return None
        start = HandedStart(instance, replace_terminal, request_id, unrun=self.store.notifier.notify)
        # Offered under _starting's admission: a start handed over before stop() is run or
        # given back by the dispatch loops, which stop() waits for.
        with self._starting(lambda: self.handed.offer(start)) as admitted:
            if not admitted:
                return None
        # Run by a round on an idle activity thread rather than by the waiting loop: the first
        # task the start schedules then runs on that thread, and so does the round its outcome
        # wakes, a thread wake-up fewer on the way to the result. If every activity thread is
        # busy, or a round runs elsewhere, the loop is woken to run it.
        if not self.activities.run_on_thread(self._round_here):
            self.store.notifier.notify(self._done_topic)
        return start

    @contextmanager
    def _starting(self, reserve: Callable[[], bool] = lambda: True) -> Iterator[bool]:
        """Around a start made in this process (eager or handed): whether this worker takes
        it (running, not stopping, and ``reserve`` agrees, under the same lock as
        ``stop()``); ``stop()`` waits for those in progress."""
        with self._starts:
            admitted = bool(self._threads) and not self._stop.is_set() and reserve()
            if admitted:
                self._starts_running += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._starts:
                    self._starts_running -= 1
                    self._starts.notify_all()

    # -- loops --

    def _dispatch_loop(self, runner: RoundRunner) -> None:
        topics = (ORCHESTRATIONS, ACTIVITIES, self._done_topic, self._stop_topic)
        errors = 0
        while not self._stop.is_set():
            # The snapshot comes before the round, so a signal that arrives meanwhile is not lost.
            seen = self.store.notifier.snapshot(topics)
            try:
                with runner.lock:
                    report = runner.run()
                errors = 0
            except Exception:
                log.exception("worker round failed; retrying")
                self._stop.wait(_ERROR_BACKOFF[min(errors, len(_ERROR_BACKOFF) - 1)])
                errors += 1
                continue
            if not report.busy:  # drained: sleep until signalled, due or time to renew
                timeout = self._idle_timeout(report)
                runner.wakes_at = self.clock() + timeout
                try:
                    with self.handed.waiting():
                        self.store.notifier.wait(topics, seen, timeout)
                finally:
                    runner.wakes_at = None

    def _round_here(self) -> tuple[Registration, ActivityWorkItem] | None:
        """On a plain-function activity's thread, once its outcome is queued (or on an idle
        one, for a start handed over): run the first dispatch loop's next round on this
        thread, unless a round runs now (its loop is then woken, as an activity's end always
        did), and return a task that round took for this thread to run next. A sequential
        step (an activity, then the turn its outcome wakes, which schedules the next
        activity) so passes between no threads: the two thread wake-ups of a hand-over to the
        dispatch loop and back cost 0.1–0.2 ms of each step on a 2-core VM
        (``python -m bench.step_timeline``). The loop is woken if it would sleep past what
        the round left waiting or coming due."""
        runner = self._runners[0]
        done = self.store.notifier
        if not self._threads or self._stop.is_set() or not runner.lock.acquire(blocking=False):
            done.notify(self._done_topic)
            return None
        here: list[tuple[Registration, ActivityWorkItem]] = []

        def start(items: list[ActivityWorkItem]) -> None:
            # Started within the round, so within the room it reserved: the first for this
            # thread, the rest on the pool.
            if here:
                self.activities.start(items)
            elif (first := self.activities.start_here(items)) is not None:
                here.append(first)

        try:
            report = runner.run(start=start)
        except Exception:
            log.exception("worker round failed on an activity thread; the dispatch loop retries it")
            done.notify(self._done_topic)
            return None
        finally:
            runner.lock.release()
        if runner.sleeps_past(report):
            done.notify(self._done_topic)
        return here[0] if here else None

    def _housekeeping_loop(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.wait(self.options.heartbeat_interval):
            try:
                self._heartbeat()
                if time.monotonic() - last_sweep >= SWEEP_INTERVAL:
                    self._sweep()
                    last_sweep = time.monotonic()
            except Exception:
                log.exception("worker housekeeping error")

    def _sweep(self) -> None:
        """Retention: forget the rows of workers gone for ``forget_workers_after`` and the
        request ids of client operations older than a day (their retries are long over)."""
        now = self.clock()
        self._store.sweep(
            workers_before=now - self.options.forget_workers_after, requests_before=now - REQUEST_RETENTION
        )

    def _idle_timeout(self, report: RoundReport) -> float:
        """How long an idle dispatch loop may sleep: until the next due work (a message,
        a task it has room for, a lease expiry), at most ``poll_interval``.
        Work that was already due when the round looked and was not taken is work this
        worker cannot take (names it does not run, or no room): only a signal or the poll
        brings it back (the report leaves it out). Work that came due while the round ran is
        taken at once."""
        timeout = self.options.poll_interval
        if report.next_due is not None:
            timeout = min(timeout, max(0.0, report.next_due - self.clock() + 0.001))
        return timeout

    # -- heartbeat --

    def _heartbeat(self) -> None:
        self._store.heartbeat(
            WorkerRecord(
                worker_id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                orchestrations=self.app.version_keys(),
                activities=tuple(sorted(self.app.activities)),
                started_at=self._started_at,
                heartbeat_at=self.clock(),
                concurrency={
                    "activities_running": self.activities.running,
                    "activity_concurrency": self.options.activity_concurrency,
                    "orchestration_concurrency": self.options.orchestration_concurrency,
                },
            )
        )

    # -- introspection --

    def stats(self) -> dict[str, int]:
        """Counters: turns, cached turns vs full replays, activities (``local_activities``
        for those run inside a turn), ``eager_starts``, ``handed_starts`` (plain starts of
        this process run by this worker's dispatch loops with their first turn), and the dropped writes
        told apart: ``turns_lease_lost`` / ``activities_lease_lost`` (another worker took the
        work over after our lease expired; nothing was written; of the activities,
        ``activities_lease_expired_in_outage`` those whose lease ran out because the store
        did not answer this worker's renewals) versus
        ``activities_discarded`` = ``activities_instance_terminal`` (the instance had been
        terminated, completed or failed) + ``activities_execution_ended`` (the execution had
        continued as new), where the store recorded the discarded result."""
        return dict(self.counters)
