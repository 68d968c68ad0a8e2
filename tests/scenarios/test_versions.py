"""Scenarios: orchestration versions side by side. A running instance stays on the version it
started with; new starts run the latest; a worker never takes a version it lacks (and the
diagnosis names it); continue-as-new moves an eternal orchestration to new code."""

from __future__ import annotations

import time

import pytest

import perdure
from perdure.core.history import ExecutionStarted


def _app(*versions: int) -> perdure.App:
    """An app with the given versions of ``order`` (and of the ``ticker`` loop)."""
    app = perdure.App()
    for version in versions:

        async def order(ctx: perdure.OrchestrationContext, item: str, version: int = version) -> str:
            await ctx.wait_for_event("go")
            return f"{item} shipped by v{version}"

        async def ticker(ctx: perdure.OrchestrationContext, n: int, version: int = version) -> list:
            if n >= 2:
                return [n, version]
            await ctx.wait_for_event("tick")
            ctx.continue_as_new(n + 1, version="latest")

        app.orchestration(name="order", version=version)(order)
        app.orchestration(name="ticker", version=version)(ticker)
    return app


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _worker(app, store):
    return perdure.Worker(app, store, poll_interval=0.02, heartbeat_interval=0.05)


def test_running_instances_finish_on_their_version_while_new_starts_run_the_latest(store):
    old_client = perdure.Client(store, app=_app(1))
    with _worker(_app(1), store):
        old_client.start("order", "book", instance_id="o1")
        _until(lambda: old_client.get("o1").status.value == "RUNNING")

    both = _app(1, 2)
    client = perdure.Client(store, app=both)
    client.start("order", "lamp", instance_id="o2")
    client.start("order", "desk", instance_id="o3", version=1)
    assert [client.get(i).version for i in ("o1", "o2", "o3")] == [1, 2, 1]
    with _worker(both, store):
        for iid in ("o1", "o2", "o3"):
            _until(lambda iid=iid: client.get(iid).status.value == "RUNNING")
            client.raise_event(iid, "go")
        outputs = [client.wait(i, timeout=10).output for i in ("o1", "o2", "o3")]
    assert outputs == ["book shipped by v1", "lamp shipped by v2", "desk shipped by v1"]
    assert {s.instance_id for s in client.list(version=1).items} == {"o1", "o3"}
    assert client.count(perdure.InstanceFilter(name="order", version=2)) == 1
    assert client.get("o2").to_dict()["version"] == 2


def test_a_worker_without_an_instances_version_never_takes_it_and_diagnosis_names_the_version(store):
    client = perdure.Client(store, app=_app(1, 2))
    client.start("order", "book", instance_id="o1", version=1)
    with _worker(_app(2), store) as worker:
        _until(lambda: client.workers(alive_within=5) != [])
        time.sleep(0.3)  # several rounds of a worker that runs only version 2
        assert client.get("o1").status.value == "PENDING"
        assert worker.worker_id in {w.worker_id for w in client.workers()}
        [finding] = [f for f in client.diagnose("o1").findings if f.code == "no_worker"]
    assert "no live worker runs version 1 of orchestration 'order' (live workers run version 2)" in finding.summary
    assert finding.evidence["version"] == 1 and finding.evidence["versions_served"] == [2]
    assert "keep version 1 of 'order' registered" in finding.mitigation
    with _worker(_app(1), store):
        _until(lambda: client.get("o1").status.value == "RUNNING")
        client.raise_event("o1", "go")
        assert client.wait("o1", timeout=10).output == "book shipped by v1"


def test_a_start_that_leaves_the_version_open_runs_the_workers_latest_and_records_it(store):
    client = perdure.Client(store)  # no app: the version is the worker's to choose
    iid = client.start("order", "chair")
    assert client.get(iid).version is None
    with _worker(_app(1, 3), store):
        _until(lambda: client.get(iid).status.value == "RUNNING")
        assert client.get(iid).version == 3
        client.raise_event(iid, "go")
        assert client.wait(iid, timeout=10).output == "chair shipped by v3"
    [started] = [e for e in client.history(iid) if isinstance(e, ExecutionStarted)]
    assert started.version == 3


def test_continue_as_new_moves_an_eternal_orchestration_to_the_latest_version(store):
    client = perdure.Client(store, app=_app(1))
    client.start("ticker", 0, instance_id="t")
    with _worker(_app(1), store):
        _until(lambda: client.get("t").status.value == "RUNNING")
    client = perdure.Client(store, app=_app(1, 2))
    with _worker(_app(1, 2), store):
        client.raise_event("t", "tick")  # execution 1 (v1) continues as new on the latest
        _until(lambda: client.get("t").execution_id == 2 and client.get("t").status.value == "RUNNING")
        assert client.get("t").version == 2
        client.raise_event("t", "tick")
        assert client.wait("t", timeout=10).output == [2, 2]
    versions = [
        [e.version for e in client.history("t", execution_id=n) if isinstance(e, ExecutionStarted)] for n in (1, 2, 3)
    ]
    assert versions == [[1], [2], [2]]


def test_versions_are_checked_at_the_call(store):
    client = perdure.Client(store, app=_app(1, 2))
    with pytest.raises(
        perdure.RegistrationError, match=r"version 5 of orchestration 'order' is not registered \(registered: 1, 2\)"
    ):
        client.start("order", "x", version=5)
    with pytest.raises(perdure.InvalidInputError, match="an orchestration version is an integer >= 1"):
        perdure.Client(store).start("order", "x", version=0)
    with pytest.raises(perdure.RegistrationError, match="version 2 of orchestration 'order' is already registered"):
        _app(1, 2).orchestration(name="order", version=2)(_app(1).orchestrations["order"].fn)
    with pytest.raises(perdure.RegistrationError, match="orchestration version must be an integer >= 1"):
        perdure.App().orchestration(name="order", version="2")
    assert client.list().items == []
