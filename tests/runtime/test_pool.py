"""The activity thread pool: grows as work arrives, never past its size, reuses idle threads."""

from __future__ import annotations

import threading
import time

from perdure.runtime.pool import ThreadPool


def test_calls_beyond_the_size_wait_for_a_free_thread():
    pool = ThreadPool(2, "t")
    release = threading.Event()
    started: list[int] = []
    done = threading.Semaphore(0)

    def call(n: int) -> None:
        started.append(n)
        if n < 2:
            assert release.wait(10)
        done.release()

    for n in range(3):
        pool.submit(call, n)
    assert not done.acquire(timeout=0.2)  # two threads, both blocked: the third call waits
    assert sorted(started) == [0, 1]
    release.set()
    for _ in range(3):
        assert done.acquire(timeout=10)
    assert sorted(started) == [0, 1, 2]
    pool.shutdown()


def test_an_idle_thread_is_reused_and_an_error_does_not_kill_it():
    pool = ThreadPool(4, "t")
    names: list[str] = []
    done = threading.Semaphore(0)

    def call(fail: bool) -> None:
        names.append(threading.current_thread().name)
        done.release()
        if fail:
            raise RuntimeError("boom")

    for fail in (True, False, False):
        pool.submit(call, fail)
        assert done.acquire(timeout=10)
        deadline = time.monotonic() + 10
        while not pool._idle:  # the thread is back waiting for work
            assert time.monotonic() < deadline
            time.sleep(0.001)
    assert names == ["t_0"] * 3  # one at a time: the first thread served every call
    pool.shutdown()


def test_shutdown_drops_the_calls_not_started():
    pool = ThreadPool(1, "t")
    release, ran = threading.Event(), []
    pool.submit(lambda: release.wait(10))
    pool.submit(ran.append, "dropped")
    pool.shutdown()
    release.set()
    threading.Event().wait(0.1)
    assert ran == []
