"""The ``perdure`` command: every command on a real SQLite store."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

import perdure
from perdure.cli import cli

app = perdure.App()


@app.activity
def greet(name: str) -> str:
    return f"hello {name}"


@app.orchestration
async def hello(ctx: perdure.OrchestrationContext, name: str) -> str:
    await ctx.wait_for_event("go")
    return await ctx.call_activity(greet, name)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(url: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == code, result.output + result.stderr
    return result.output if code == 0 else result.stderr


def test_start_status_raise_and_history_round_trip(url):
    iid = run(url, "start", "hello", '"ada"', "--id", "h-1").strip()
    assert iid == "h-1"
    status = json.loads(run(url, "status", "h-1", "--json"))
    assert status["status"] == "PENDING" and status["input"] == "ada"
    store = perdure.open_store(url)
    with perdure.Worker(app, store, poll_interval=0.05):
        client = perdure.Client(store)
        deadline = time.monotonic() + 10
        while client.get("h-1").status is not perdure.OrchestrationStatus.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert "raised go" in run(url, "raise", "h-1", "go")
        state = client.wait("h-1", timeout=10)
    store.close()
    assert state.output == "hello ada"
    done = json.loads(run(url, "status", "h-1", "--json", "--history"))
    assert done["status"] == "COMPLETED" and done["output"] == "hello ada"
    assert len(done["history"]) == done["history_event_count"]
    events = json.loads(run(url, "history", "h-1", "--json"))
    assert [e["kind"] for e in events][-1] == "ExecutionCompleted"
    table = run(url, "history", "h-1")
    assert "ActivityCompleted" in table and "EventRaised" in table
    assert "COMPLETED" in run(url, "status", "h-1")


def test_list_pages_and_filters(url):
    for i in range(3):
        run(url, "start", "hello", '"x"', "--id", f"l-{i}")
    page = json.loads(run(url, "list", "--json", "--limit", "2"))
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = json.loads(run(url, "list", "--json", "--limit", "2", "--cursor", page["next_cursor"]))
    ids = {i["instance_id"] for i in page["items"] + rest["items"]}
    assert ids == {"l-0", "l-1", "l-2"}
    assert "l-1" in run(url, "list", "--status", "PENDING", "--name", "hello")


def test_terminate_suspend_resume_and_purge(url):
    run(url, "start", "hello", '"x"', "--id", "t-1")
    assert "suspend requested" in run(url, "suspend", "t-1", "--reason", "maintenance")
    assert "resume requested" in run(url, "resume", "t-1")
    assert "terminate requested" in run(url, "terminate", "t-1", "--reason", "no longer needed")
    store = perdure.open_store(url)
    with perdure.Worker(app, store, poll_interval=0.05):
        state = perdure.Client(store).wait("t-1", timeout=10)
    store.close()
    assert state.status is perdure.OrchestrationStatus.TERMINATED
    assert "purged t-1" in run(url, "purge", "t-1")
    assert "no instance" in run(url, "status", "t-1", code=2)


def test_store_from_environment_variable(url, monkeypatch):
    monkeypatch.setenv("PERDURE_STORE", url)
    result = CliRunner().invoke(cli, ["start", "hello", '"env"', "--id", "e-1"])
    assert result.exit_code == 0
    assert perdure.Client(perdure.open_store(url)).get("e-1") is not None


def test_demo_runs_every_feature_and_exits_zero(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--store", f"sqlite:///{tmp_path / 'demo.db'}"])
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in (
        "failed: payment gateway timed out",
        "received event ManagerApproval",
        "timer fired",
        "child completed",
        "order-1001: COMPLETED",
        "loyalty-42: COMPLETED in execution 3",
    ):
        assert needle in out
