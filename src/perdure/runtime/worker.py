"""The Worker: runs orchestration turns and activities against a store."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from perdure.core.registry import App
from perdure.errors import InvalidInputError
from perdure.runtime.activities import ActivityDispatcher
from perdure.runtime.cache import ExecutorCache
from perdure.runtime.options import WorkerOptions
from perdure.runtime.orchestrations import OrchestrationDispatcher
from perdure.store.base import Store, WorkerRecord
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS

log = logging.getLogger("perdure.worker")

_ERROR_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Worker:
    """Runs the orchestrations and activities of ``app`` from ``store``.

    Use it as a context manager (``with Worker(app, store): ...``), with ``start()`` /
    ``stop()``, or from asyncio (``async with Worker(...)`` or ``await worker.run()``).
    Settings are the fields of :class:`WorkerOptions`, passed as keyword arguments.

    Threads: one per orchestration dispatcher (``orchestration_concurrency``), one activity
    dispatcher with its pool, and one housekeeping thread (heartbeat, lease expiry sweep,
    work nobody can run). Idle threads sleep until the store signals new work in this
    process, the next timer or retry is due, or ``poll_interval`` passes.
    """

    def __init__(self, app: App, store: Store, *, worker_id: str | None = None, **options: Any) -> None:
        if not isinstance(app, App):
            raise InvalidInputError(f"Worker needs a perdure.App, got {type(app).__name__}")
        self.app = app
        self.store = store
        self.options = WorkerOptions(**options)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock: Callable[[], float] = getattr(store, "clock", time.time)
        self.counters: Counter[str] = Counter()
        self.cache = ExecutorCache(self.options.cache_size)
        self._stop = threading.Event()
        self._stop_topic = f"stop:{self.worker_id}"
        self._done_topic = f"done:{self.worker_id}"
        self._threads: list[threading.Thread] = []
        self._started_at = 0.0
        self._shutdown_timeout = self.options.shutdown_timeout
        self.orchestrations = OrchestrationDispatcher(
            app, store, self.worker_id, self.options, self.cache, self.clock, self.counters
        )
        self.activities = ActivityDispatcher(
            app,
            store,
            self.worker_id,
            self.options,
            self.clock,
            self.counters,
            wake=lambda: store.notifier.notify(self._done_topic),
        )

    # -- lifecycle --

    def start(self) -> Worker:
        """Start the worker's threads and return at once."""
        if self._threads:
            raise RuntimeError("worker already started")
        self._stop.clear()
        self._started_at = self.clock()
        self._heartbeat()
        threads = [
            threading.Thread(target=self._orchestration_loop, name=f"perdure-orch-{i}", daemon=True)
            for i in range(self.options.orchestration_concurrency)
        ]
        threads.append(threading.Thread(target=self._activity_loop, name="perdure-activities", daemon=True))
        threads.append(threading.Thread(target=self._housekeeping_loop, name="perdure-housekeeping", daemon=True))
        self._threads = threads
        for thread in threads:
            thread.start()
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
        self._shutdown_timeout = self.options.shutdown_timeout if timeout is None else timeout
        self._stop.set()
        self.store.notifier.notify(self._stop_topic)
        for thread in self._threads:
            thread.join()
        self._threads = []
        try:
            self.store.remove_worker(self.worker_id)
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

    # -- loops --

    def _orchestration_loop(self) -> None:
        topics = (ORCHESTRATIONS, self._stop_topic)
        errors = 0
        while not self._stop.is_set():
            # The snapshot comes before the poll, so a signal that arrives meanwhile is not lost.
            seen = self.store.notifier.snapshot(topics)
            try:
                worked = self.orchestrations.poll()
                errors = 0
            except Exception:
                log.exception("orchestration dispatcher error; retrying")
                self._stop.wait(_ERROR_BACKOFF[min(errors, len(_ERROR_BACKOFF) - 1)])
                errors += 1
                continue
            if worked < self.options.batch_size:  # drained: sleep until signalled or due
                self.store.notifier.wait(topics, seen, self._idle_timeout("orchestrations"))

    def _activity_loop(self) -> None:
        topics = (ACTIVITIES, self._done_topic, self._stop_topic)
        errors = 0
        look = True  # whether the queue may hold due tasks we have room for
        while not self._stop.is_set():
            seen = self.store.notifier.snapshot(topics)
            try:
                if look:
                    self.activities.poll()
                    look = not self.activities.drained
                else:
                    self.activities.poll(accept_new=False)  # report and renew only
                errors = 0
            except Exception:
                log.exception("activity dispatcher error; retrying")
                self._stop.wait(_ERROR_BACKOFF[min(errors, len(_ERROR_BACKOFF) - 1)])
                errors += 1
                look = True
                continue
            if look and self.activities.running < self.options.activity_concurrency:
                continue
            timeout = self._idle_timeout("activities")
            renewal = self.activities.next_renewal_in()
            if renewal is not None:
                timeout = min(timeout, renewal)
            signalled = self.store.notifier.wait(topics, seen, timeout)
            # New tasks were signalled, or the wait timed out (work from other processes and
            # due retries are only found by looking).
            if not signalled or self.store.notifier.version(ACTIVITIES) != seen[ACTIVITIES]:
                look = True
        self.activities.shutdown(self._shutdown_timeout)

    def _housekeeping_loop(self) -> None:
        interval = min(self.options.heartbeat_interval, max(self.options.unknown_name_grace / 2, 0.05))
        last_heartbeat = time.monotonic()
        while not self._stop.wait(interval):
            try:
                if time.monotonic() - last_heartbeat >= self.options.heartbeat_interval:
                    self._heartbeat()
                    last_heartbeat = time.monotonic()
                self._fail_unserved_work()
            except Exception:
                log.exception("worker housekeeping error")

    def _idle_timeout(self, queue: str) -> float:
        """How long an idle dispatcher of ``queue`` may sleep: until its next due message or
        task (or lease expiry), at most ``poll_interval``."""
        due = self.store.next_visible_at(queue=queue)
        if due is None:
            return self.options.poll_interval
        return min(self.options.poll_interval, max(0.0, due - self.clock()) + 0.001)

    # -- heartbeat and unserved work --

    def _heartbeat(self) -> None:
        self.store.heartbeat(
            WorkerRecord(
                worker_id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                orchestrations=tuple(sorted(self.app.orchestrations)),
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

    def _fail_unserved_work(self) -> None:
        """Fail work for names no live worker registered, after ``unknown_name_grace``: an
        instance never sits in Running forever waiting for code nobody runs."""
        alive = self.store.list_workers(alive_within=3 * self.options.heartbeat_interval)
        orchestrations = set(self.app.orchestrations).union(*(w.orchestrations for w in alive))
        activities = set(self.app.activities).union(*(w.activities for w in alive))
        instance_ids, task_ids = self.store.unserved_work(
            orchestration_names=orchestrations,
            activity_names=activities,
            older_than=self.options.unknown_name_grace,
        )
        if instance_ids:
            self.orchestrations.poll(instance_ids=instance_ids, limit=len(instance_ids))
        if task_ids:
            self.activities.poll(task_row_ids=task_ids)

    # -- introspection --

    def stats(self) -> dict[str, int]:
        """Counters: turns, cached turns vs full replays, activities, and the dropped writes
        told apart: ``turns_lease_lost`` / ``activities_lease_lost`` (another worker took the
        work over after our lease expired; nothing was written) versus
        ``activities_discarded`` = ``activities_instance_terminal`` (the instance had been
        terminated, completed or failed) + ``activities_execution_ended`` (the execution had
        continued as new), where the store recorded the discarded result."""
        return dict(self.counters)
