"""The activity thread pool: a few threads for short calls, one per call for calls that block."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from perdure.runtime.pool import ThreadPool


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def held_calls() -> tuple[threading.Event, list[int], Callable[[int], None]]:
    """A call that notes its argument and then waits until the event is set."""
    release = threading.Event()
    running: list[int] = []

    def call(n: int) -> None:
        running.append(n)
        assert release.wait(10)

    return release, running, call


def test_calls_that_block_get_a_thread_each_up_to_the_size():
    pool = ThreadPool(4, "t", core=2, stall=0.01)
    release, running, call = held_calls()

    for n in range(6):
        pool.submit(call, n)
    # Two core threads at once; the two blocked, the watcher adds two more: the size.
    _wait_until(lambda: len(running) == 4)
    time.sleep(0.05)
    assert sorted(running) == [0, 1, 2, 3] and pool.threads == 4
    release.set()
    _wait_until(lambda: len(running) == 6)
    pool.shutdown()


def test_short_calls_stay_on_the_core_threads():
    pool = ThreadPool(64, "t", core=2, stall=1.0)
    done = threading.Semaphore(0)
    for _ in range(200):
        pool.submit(done.release)
    for _ in range(200):
        assert done.acquire(timeout=10)
    assert pool.threads == 2  # the calls kept moving: no thread was added
    pool.shutdown()


def test_a_call_goes_to_a_waiting_thread_without_starting_or_waking_another():
    """One call at a time (a sequential orchestration's activities) stays on one thread,
    and the watcher, which starts threads for stalled calls, is never woken."""
    pool = ThreadPool(4, "t", core=4, stall=1.0)
    done = threading.Semaphore(0)
    for _ in range(20):
        pool.submit(done.release)
        assert done.acquire(timeout=10)
        _wait_until(lambda: pool.idle == 1)
    assert pool.threads == 1
    pool.shutdown()
    pool = ThreadPool(4, "t", core=1, stall=1.0)
    for _ in range(20):
        pool.submit(done.release)
        assert done.acquire(timeout=10)
        _wait_until(lambda: pool.idle == 1)
    assert pool.threads == 1 and pool._watcher is None
    pool.shutdown()


def test_an_error_in_a_call_does_not_end_its_thread():
    pool = ThreadPool(1, "t")
    names: list[str] = []
    done = threading.Semaphore(0)

    def call(fail: bool) -> None:
        names.append(threading.current_thread().name)
        done.release()
        if fail:
            raise RuntimeError("boom")

    for fail in (True, False):
        pool.submit(call, fail)
        assert done.acquire(timeout=10)
    assert names == ["t_0", "t_0"]
    pool.shutdown()


def test_shutdown_drops_the_calls_not_started():
    pool = ThreadPool(1, "t")
    release, ran = threading.Event(), []
    pool.submit(lambda: release.wait(10))
    pool.submit(ran.append, "dropped")
    pool.shutdown()
    release.set()
    time.sleep(0.1)
    assert ran == []


def test_a_call_submitted_now_never_waits_behind_busy_threads():
    """``submit_now`` runs a call on a waiting thread, or on a new one below ``core``;
    with every thread busy and none more to start at once, it refuses (nothing queued)."""
    pool = ThreadPool(4, "t", core=2, stall=0.01)
    release, running, call = held_calls()

    assert pool.submit_now(call, 0) and pool.submit_now(call, 1)  # two new threads
    _wait_until(lambda: len(running) == 2)
    assert not pool.submit_now(call, 2)  # both busy, and the core is reached
    release.set()
    _wait_until(lambda: pool.idle == 2)
    release.clear()
    assert pool.submit_now(call, 3)  # a waiting thread takes it
    _wait_until(lambda: len(running) == 3)
    assert sorted(running) == [0, 1, 3] and pool.threads == 2
    release.set()
    pool.shutdown()
