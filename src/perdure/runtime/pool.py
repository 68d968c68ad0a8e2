"""The thread pool that runs plain-function activities."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("perdure.worker")

_Call = tuple[Callable[..., None], tuple[Any, ...]]


class ThreadPool:
    """Runs calls on up to ``size`` daemon threads, started as work arrives.

    What :class:`concurrent.futures.ThreadPoolExecutor` does for the dispatcher, without the
    Future (and its Condition) built per call that nobody reads: an activity reports its
    outcome itself. Daemon threads: an activity that never returns cannot keep the process
    from exiting once the worker has stopped (its lease is released at stop).
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call that no submit has claimed yet
        self._closed = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread; an exception it raises is logged."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is shut down")
            self._calls.put((fn, args))
            if self._idle:
                self._idle -= 1  # that thread will take this call
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._run, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def shutdown(self) -> None:
        """Drop the calls not started yet and let every thread end after its current call."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    self._calls.get_nowait()
                except queue.Empty:
                    break
            for _ in self._threads:
                self._calls.put(None)

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            fn, args = call
            try:
                fn(*args)
            except BaseException:
                log.exception("uncaught error on %s", threading.current_thread().name)
            with self._lock:
                self._idle += 1
