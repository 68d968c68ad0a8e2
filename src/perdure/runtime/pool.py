"""The thread pool that runs plain-function activities."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("perdure.worker")

_Call = tuple[Callable[..., None], tuple[Any, ...]]


class ThreadPool:
    """Runs calls on up to ``size`` daemon threads.

    A call goes to a thread that waits for one; only when none waits does a thread start:
    at once up to ``core`` threads, past them when calls are waiting and no thread has
    taken one for ``stall`` seconds (every thread is blocked in I/O or busy with a long
    call); then one starts per waiting call, up to ``size``. Short calls so stay on a few
    threads: under the GIL more threads add no parallelism, only switching, which costs the
    dispatch thread (measured: W1 ran about 20 % faster on 8 threads than on one per
    activity in flight). Calls that block still get a thread each, a few milliseconds late.

    No Future is built per call (an activity reports its outcome itself). Daemon threads:
    an activity that never returns cannot keep the process from exiting once the worker
    has stopped (its lease is released at stop).
    """

    def __init__(self, size: int, name: str, *, core: int | None = None, stall: float = 0.002) -> None:
        self._size = size
        self._core = min(size, core if core is not None else 4 * (os.cpu_count() or 1))
        self._stall = stall
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._taken = 0  # calls taken by the threads so far: progress, for the watcher
        # Threads waiting for a call minus calls waiting for a thread, both counted under
        # the lock (a thread counts itself before it waits, a call when it is submitted), so
        # a call finds a thread that is not busy exactly when this is not negative.
        self._idle = 0
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None
        self._closed = False

    @property
    def threads(self) -> int:
        """How many threads the pool has started."""
        return len(self._threads)

    @property
    def idle(self) -> int:
        """How many threads wait for a call (0 while calls wait for a thread)."""
        return max(0, self._idle)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread; an exception it raises is logged."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is shut down")
            self._calls.put((fn, args))
            self._idle -= 1
            if self._idle >= 0:
                return  # a waiting thread takes it: no thread to start, no watcher to wake
            if len(self._threads) < self._core:
                self._start(f"{self._name}_{len(self._threads)}", self._run)
            elif len(self._threads) < self._size:
                if self._watcher is None:
                    self._watcher = self._start(f"{self._name}_watcher", self._watch, count=False)
                self._wake.set()

    def submit_now(self, fn: Callable[..., None], *args: Any) -> bool:
        """Run ``fn(*args)`` at once: on a thread that waits for a call, else on a new one
        while the pool has fewer than ``core``; False (nothing done) if neither (a call that
        must not wait behind busy threads)."""
        with self._lock:
            if self._closed or (self._idle <= 0 and len(self._threads) >= self._core):
                return False
            self._calls.put((fn, args))
            self._idle -= 1
            if self._idle < 0:
                self._start(f"{self._name}_{len(self._threads)}", self._run)
            return True

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
            self._wake.set()

    def _start(self, name: str, target: Callable[[], None], *, count: bool = True) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        if count:
            self._threads.append(thread)
        thread.start()
        return thread

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            call = self._calls.get()
            if call is None:
                return
            self._taken += 1
            fn, args = call
            try:
                fn(*args)
            except BaseException:
                log.exception("uncaught error on %s", threading.current_thread().name)

    def _watch(self) -> None:
        """Start threads while calls wait and none is taken for ``stall`` seconds."""
        while True:
            self._wake.wait()
            self._wake.clear()  # before looking at the queue: a later submit wakes us again
            while self._calls.qsize():
                taken = self._taken
                time.sleep(self._stall)
                with self._lock:
                    if self._closed:
                        return
                    waiting = self._calls.qsize()
                    if waiting and self._taken == taken:
                        for _ in range(min(waiting, self._size - len(self._threads))):
                            self._start(f"{self._name}_{len(self._threads)}", self._run)
            if self._closed:
                return
