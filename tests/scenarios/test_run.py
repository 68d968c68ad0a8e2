"""``Client.run``: start an instance and wait for its end in one call. In a process whose
worker serves the orchestration and waits for work, the start is handed to that worker, and
the caller sleeps until the instance ends: it is not woken when the start commits."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest

import perdure
from perdure.client import _PendingStart
from perdure.runtime.handed import HandedStart
from perdure.store.base import NewInstance
from tests.scenarios.helpers import idle

app = perdure.App()
OPTIONS = {"poll_interval": 0.05}
gate = threading.Event()


@pytest.fixture(autouse=True)
def shut_gate():
    gate.clear()
    yield
    gate.set()


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.activity
def double_at_the_gate(x: int) -> int:
    assert gate.wait(10)
    return 2 * x


@app.orchestration
async def doubles(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, x)


@app.orchestration
async def doubles_at_the_gate(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double_at_the_gate, x)


def kinds(client: perdure.Client, iid: str) -> list[str]:
    return [type(e).__name__ for e in client.get(iid, history=True).history]


def test_run_returns_the_final_state_and_records_what_start_and_wait_record(store, client):
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        state = client.run(doubles, 21, timeout=20)
        assert (state.status, state.output) == ("COMPLETED", 42)
        assert worker.stats()["handed_starts"] == 1
        idle(worker)
        waited = client.wait(client.start(doubles, 21), timeout=20)
    assert kinds(client, state.instance_id) == kinds(client, waited.instance_id)
    assert client.get(state.instance_id).output == 42


def test_run_does_not_wake_its_caller_when_the_handed_start_commits(store, client, monkeypatch):
    """The caller's only sleep is the wait for the end: it never waits on the start alone."""
    waited_for_the_start: list[str] = []
    result = HandedStart.result

    def noted(self: HandedStart) -> bool:
        waited_for_the_start.append(threading.current_thread().name)
        return result(self)

    monkeypatch.setattr(HandedStart, "result", noted)
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        assert client.run(doubles, 1, timeout=20).output == 2
        assert worker.stats()["handed_starts"] == 1
        assert waited_for_the_start == []
        idle(worker)
        client.wait(client.start(doubles, 1), timeout=20)  # start waits for it, and returns once it committed
        assert waited_for_the_start == [threading.current_thread().name]


def test_run_without_a_worker_of_its_process_queues_the_start_and_waits_for_a_worker_elsewhere(store_url, client):
    elsewhere = perdure.open_store(store_url)  # another store object: nothing is handed to its worker
    try:
        with perdure.Worker(app, elsewhere, **OPTIONS) as worker:
            assert client.run(doubles, 5, timeout=20).output == 10
        assert "handed_starts" not in worker.stats()
    finally:
        elsewhere.close()


def test_run_raises_what_the_handed_start_raised_and_keeps_what_was_stored(store, client):
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        held = client.start(doubles_at_the_gate, 1, instance_id="order-7")
        idle(worker)
        started = time.monotonic()
        with pytest.raises(perdure.InstanceExistsError, match="'order-7'"):
            client.run(doubles, 2, instance_id="order-7", timeout=20)
        assert time.monotonic() - started < 5  # raised at once, not at the timeout
        gate.set()
        assert client.wait(held, timeout=20).output == 2
    assert client.get(held).input == 1  # the run that failed changed nothing


def test_run_times_out_with_the_instance_started_and_still_running(store, client):
    with perdure.Worker(app, store, **OPTIONS) as worker:
        idle(worker)
        with pytest.raises(TimeoutError, match=r"is still RUNNING after 0\.3 s"):
            client.run(doubles_at_the_gate, 3, instance_id="slow", timeout=0.3)
        gate.set()
        assert client.wait("slow", timeout=20).output == 6


def test_a_run_whose_handed_start_is_given_back_queues_it_at_once(store, client):
    """Forced interleaving: the start was handed over, and the worker gives it back (it
    stopped first). The waiting caller is woken by that (not by its next poll, half a second
    later), queues the start as ``start`` does, and waits for its end."""
    new = NewInstance("given-back", "doubles", 4, input_json="4")
    handed = HandedStart(new, replace_terminal=False, request_id=None, unrun=store.notifier.notify)
    pending = _PendingStart(handed, partial(client._create, new, None, False, False, handed.result))
    outcome: list[object] = []
    caller = threading.Thread(
        target=lambda: outcome.append(client._wait(new.instance_id, 20, lambda: pending)), daemon=True
    )
    began = time.monotonic()
    caller.start()
    # The caller's polls, 5 ms apart then twice as far each time up to 0.5 s, come at about
    # 1.14 s and 1.64 s, then 2.14 s: the start is given back just after one of them.
    time.sleep(max(0.0, began + 1.7 - time.monotonic()))
    assert client.get("given-back") is None
    handed.give_back()
    given_back = time.monotonic()
    while client.get("given-back") is None:
        assert time.monotonic() - given_back < 0.25, "the caller did not queue the start at once"
        time.sleep(0.005)
    assert [type(m.event).__name__ for m in store.pending_messages("given-back")] == ["ExecutionStarted"]
    with perdure.Worker(app, store, **OPTIONS):
        caller.join(20)
    [state] = outcome
    assert state.output == 8  # type: ignore[attr-defined]
