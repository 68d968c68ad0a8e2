"""``Client.wait`` on an instance the same client started: it does not read the instance
before waiting when no instance has ended since the start began (the read would only find
it running), it never misses an end that came before it waited, and it takes the row that
the commit ending the instance handed over instead of reading it, unless that row may be
out of date."""

from __future__ import annotations

import threading
import time

import pytest

import perdure
from perdure.core.status import OrchestrationStatus
from perdure.store.notify import INSTANCES

app = perdure.App()
release = threading.Event()


@app.activity
def gated(x: int) -> int:
    assert release.wait(10)
    return x + 1


@app.activity
def inc(x: int) -> int:
    return x + 1


@app.orchestration
async def held(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(gated, n)


@app.orchestration
async def quick(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(inc, n)


failures = threading.Event()  # set: ``fails_once`` fails


@app.activity
def fails_once(x: int) -> int:
    if failures.is_set():
        failures.clear()
        raise RuntimeError("the first attempt fails")
    assert release.wait(10)
    return x + 1


@app.orchestration
async def failing_once(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(fails_once, n)


@pytest.fixture(autouse=True)
def closed_gate():
    release.clear()
    failures.clear()
    yield
    release.set()  # never leave a worker thread blocked


def _log_calls(monkeypatch: pytest.MonkeyPatch, store: perdure.Store) -> list[str]:
    """Log, in order, each read of an instance ("read") and each sleep on the notifier
    ("sleep") that this thread makes from now on (the worker's threads sleep on the same
    notifier; the real methods still run)."""
    log: list[str] = []
    caller = threading.current_thread()
    for target, name, entry in ((store, "get_instance", "read"), (store.notifier, "wait", "sleep")):
        original = getattr(target, name)

        def logged(*args: object, _original=original, _entry=entry, **kwargs: object) -> object:
            if threading.current_thread() is caller:
                log.append(_entry)
            return _original(*args, **kwargs)

        monkeypatch.setattr(target, name, logged)
    return log


def test_a_wait_after_a_start_sleeps_before_it_reads(
    client: perdure.Client, store: perdure.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with perdure.Worker(app, store, poll_interval=0.05):
        iid = client.start(held, 1)
        log = _log_calls(monkeypatch, store)
        threading.Timer(0.2, release.set).start()  # the instance ends while the client waits
        state = client.wait(iid, timeout=30)
    assert (state.status, state.output) == (OrchestrationStatus.COMPLETED, 2)
    assert log[0] == "sleep"  # not a first read that would find it running
    # Woken by the end, which handed its row over: not read again.
    assert log[-1] == "sleep" and state == client.get(iid)


def test_an_end_before_the_wait_is_taken_at_once(
    client: perdure.Client, store: perdure.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance ends between its start and the wait (its caller was slow to wake): the
    wait must return at once, not sleep on a signal that came before it (to wake only at
    its first poll); the end handed its row over, expected since the start, so it is not
    even read."""
    with perdure.Worker(app, store, poll_interval=0.05):
        before = store.notifier.version(INSTANCES)
        iid = client.start(quick, 1)
        deadline = time.monotonic() + 30
        # Ended: committed, and signalled in this process (the signal follows the commit,
        # so a read can see the end a moment before the process is told of it).
        while (
            store.get_instance(iid).status is not OrchestrationStatus.COMPLETED
            or store.notifier.version(INSTANCES) == before
        ):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        log = _log_calls(monkeypatch, store)
        state = client.wait(iid, timeout=30)
    assert log == [] and state.output == 2 and state == client.get(iid)


def test_a_row_handed_over_before_the_wait_is_not_taken_once_the_instance_changed(
    client: perdure.Client, store: perdure.Store
) -> None:
    """The instance fails and is rewound before anyone waits: the row its failure handed
    over is out of date, so the wait does not return it; it waits for the rewound run."""
    failures.set()
    with perdure.Worker(app, store, poll_interval=0.05):
        iid = client.start(failing_once, 1)
        deadline = time.monotonic() + 30
        while client.get(iid).status is not OrchestrationStatus.FAILED:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        client.rewind(iid, "the bug is fixed")
        threading.Timer(0.2, release.set).start()  # the rewound run ends while the client waits
        state = client.wait(iid, timeout=30)
    assert (state.status, state.output) == (OrchestrationStatus.COMPLETED, 2)


def test_a_start_with_a_callers_request_id_is_read_before_waiting(
    client: perdure.Client, store: perdure.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's request id may name a start applied long ago, whose instance may have
    ended before this call: the wait looks first."""
    with perdure.Worker(app, store, poll_interval=0.05):
        iid = client.start(held, 1, request_id="order-1")
        log = _log_calls(monkeypatch, store)
        threading.Timer(0.2, release.set).start()
        assert client.wait(iid, timeout=30).output == 2
    assert log[:2] == ["read", "sleep"]


def test_a_wait_with_no_time_left_reads_before_it_times_out(client: perdure.Client, store: perdure.Store) -> None:
    with perdure.Worker(app, store, poll_interval=0.05):
        iid = client.start(held, 1)
        with pytest.raises(TimeoutError, match=rf"instance '{iid}' is still (PENDING|RUNNING) after 0 s"):
            client.wait(iid, timeout=0)
        release.set()
        assert client.wait(iid, timeout=30).output == 2


def test_a_wait_that_begins_while_the_end_commits_reads_the_end(
    client: perdure.Client, store: perdure.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter comes after the transaction that ends the instance asked which ended
    instances are expected, and before it commits: nothing is handed over to it, and it
    reads the end once woken (instead of sleeping until it times out)."""
    [iid] = client.start_many(quick, [1])  # started in a batch: not expected by its start
    ended = store.notifier.ended
    asked = ended.expected_among
    waited: list[perdure.InstanceState] = []

    def ask_then_wait(instance_ids: list[str]) -> list[str]:
        expected = asked(instance_ids)
        if iid in instance_ids and not waited:
            waiter = threading.Thread(target=lambda: waited.append(client.wait(iid, timeout=10)))
            waiter.start()
            deadline = time.monotonic() + 10
            while not asked([iid]):  # the waiter is registered: the commit goes on
                assert time.monotonic() < deadline
                time.sleep(0.001)
        return expected

    monkeypatch.setattr(ended, "expected_among", ask_then_wait)
    with perdure.Worker(app, store, poll_interval=0.05):
        deadline = time.monotonic() + 30
        while not waited:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    assert (waited[0].status, waited[0].output) == (OrchestrationStatus.COMPLETED, 2)
