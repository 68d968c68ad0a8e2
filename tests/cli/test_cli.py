"""The ``perdure`` command end to end: a CLI worker and CLI commands on one store, each a
real ``perdure`` process."""

from __future__ import annotations

import json
import re

import pytest

import perdure

from .helpers import ROOT, Background
from .helpers import perdure as run

APP = "tests.cli.cli_app:app"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def worker(url):
    """A CLI worker on the store (``--store`` given after the subcommand, as documented)."""
    w = Background("worker", "--app", APP, "--store", url, "--poll-interval", "0.05", cwd=ROOT)
    w.wait_for_log(" serves ")
    yield w
    ran = w.stop()
    assert ran.code == 0, ran.err


def test_start_raise_result_status_history_and_list_round_trip(url, worker):
    assert run("start", "hello", '"ada"', "--id", "h-1", "--store", url).out.strip() == "h-1"
    worker.wait_for(lambda: json.loads(run("status", "h-1", "--json", "--store", url).out)["status"] == "RUNNING")
    assert "raised go to h-1" in run("raise", "h-1", "go", "--store", url).out
    assert json.loads(run("result", "h-1", "--wait", "20", "--store", url).out) == "hello ada"

    status = run("status", "h-1", "--store", url).out
    assert re.search(r"^status\s+COMPLETED$", status, re.M)
    assert re.search(r"^output\s+\"hello ada\"$", status, re.M)
    assert re.search(r"^created\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(.* ago\)$", status, re.M)

    data = json.loads(run("status", "h-1", "--json", "--history", "--store", url).out)
    assert data["status"] == "COMPLETED" and data["output"] == "hello ada"
    assert ISO_UTC.match(data["created_at"]) and ISO_UTC.match(data["last_updated_at"])
    assert all(ISO_UTC.match(e["time"]) for e in data["history"])

    table = run("history", "h-1", "--store", url).out
    assert "EventRaised" in table and "ActivityCompleted" in table and "TurnStarted" not in table
    assert "go: null" in table and 'task 1: "hello ada"' in table
    assert "TurnStarted" in run("history", "h-1", "--all", "--store", url).out
    events = json.loads(run("history", "h-1", "--json", "--store", url).out)
    assert [e["kind"] for e in events][-1] == "ExecutionCompleted"
    assert all(e["kind"] != "TurnStarted" for e in events) and events[0]["index"] == 1

    listed = run("list", "--prefix", "h-", "--store", url).out
    assert "h-1" in listed and "hello" in listed and "COMPLETED" in listed


def test_running_instance_shows_what_it_waits_for_and_its_children_in_words(url, worker):
    run("start", "forever", "--id", "w-1", "--store", url)
    worker.wait_for(lambda: json.loads(run("status", "w-1", "--json", "--store", url).out)["status"] == "RUNNING")
    status = run("status", "w-1", "--store", url).out
    assert re.search(r"^waiting on\s+event never since \d{4}-\d\d-\d\d .* \((now|.* ago)\)$", status, re.M)
    waiting = json.loads(run("status", "w-1", "--json", "--store", url).out)["waiting_on"]
    assert waiting["events"][0]["name"] == "never" and ISO_UTC.match(waiting["events"][0]["since"])
    run("terminate", "w-1", "--reason", "no longer needed", "--store", url)
    assert run("result", "w-1", "--wait", "20", "--store", url, code=1).err.strip() == (
        "error: instance 'w-1' was TERMINATED: no longer needed"
    )
    assert re.search(r"^reason\s+no longer needed$", run("status", "w-1", "--store", url).out, re.M)
    assert json.loads(run("status", "w-1", "--json", "--store", url).out)["termination_reason"] == "no longer needed"


def test_history_of_earlier_executions(url, worker):
    run("start", "looping", "0", "--id", "loop-1", "--store", url)
    assert run("result", "loop-1", "--wait", "20", "--store", url).out.strip() == "3"
    current = json.loads(run("history", "loop-1", "--json", "--store", url).out)
    assert {e["execution_id"] for e in current} == {3}
    first = run("history", "loop-1", "--execution", "1", "--store", url).out
    assert "execution 1" in first and "ContinuedAsNew" in first
    every = json.loads(run("history", "loop-1", "--all-executions", "--json", "--store", url).out)
    assert sorted({e["execution_id"] for e in every}) == [1, 2, 3]
    err = run("history", "loop-1", "--execution", "9", "--store", url, code=1).err
    assert err == "error: instance 'loop-1' has executions 1 to 3, not 9\n"


def test_list_never_cuts_ids_when_piped_and_keeps_stdout_for_the_rows(url):
    long_id = "order-" + "x" * 120
    run("start", "quick", "1", "--id", long_id, "--store", url)
    run("start", "quick", "2", "--id", "short-1", "--store", url)
    page = run("list", "--limit", "1", "--store", url)
    lines = page.out.splitlines()
    assert len(lines) == 2 and lines[0].split()[:4] == ["INSTANCE", "NAME", "VER", "STATUS"]
    assert page.err.startswith("more: --cursor ")
    rest = run("list", "--cursor", page.err.split()[-1], "--store", url).out.splitlines()
    assert long_id in rest[1].split()
    none = run("list", "--prefix", "nothing-", "--store", url)
    assert none.out == "" and none.err == "no instances match (id prefix 'nothing-')\n"


def test_payloads_from_a_file_and_from_stdin(url, tmp_path):
    big = {"items": list(range(40_000))}  # over 200 KB: too long for one shell argument on many systems
    (tmp_path / "payload.json").write_text(json.dumps(big), encoding="utf-8")
    run("start", "quick", "@payload.json", "--id", "f-1", "--store", url, cwd=tmp_path)
    run("start", "quick", "-", "--id", "s-1", "--store", url, stdin='{"from": "stdin"}')
    store = perdure.open_store(url)
    try:
        client = perdure.Client(store)
        assert client.get("f-1").input == big and client.get("s-1").input == {"from": "stdin"}
        client.start("forever", None, instance_id="e-1")
    finally:
        store.close()
    (tmp_path / "event.json").write_text('{"ok": true}', encoding="utf-8")
    run("raise", "e-1", "never", "@event.json", "--store", url, cwd=tmp_path)
    run("raise", "e-1", "never", "-", "--store", url, stdin="[1, 2]")
    store = perdure.open_store(url)
    try:
        assert [m.event.input for m in store.pending_messages("e-1")][-2:] == [{"ok": True}, [1, 2]]
    finally:
        store.close()


def test_start_checks_the_name_against_the_app_or_says_it_did_not(url, tmp_path):
    err = run("start", "no_such_flow", "--app", APP, "--store", url, cwd=ROOT, code=1).err
    assert err.startswith("error: orchestration 'no_such_flow' is not registered in the app (registered: ")
    assert "quick" in err and len(err.splitlines()) == 1
    unchecked = run("start", "no_such_flow", "--store", url)
    assert "was not checked" in unchecked.err and unchecked.out.strip()
    env_checked = run("start", "quick", "1", "--store", url, cwd=ROOT, env=_env(PERDURE_APP=APP))
    assert "not checked" not in env_checked.err


def test_store_and_logging_options_are_accepted_on_the_group_every_command_and_from_the_environment(url, tmp_path):
    run("init", "--store", url)
    run("--store", url, "start", "quick", "1", "--id", "g-1")
    run("start", "quick", "1", "--id", "c-1", "--store", url)
    run("start", "quick", "1", "--id", "e-1", env=_env(PERDURE_STORE=url))
    for command in (["status", "g-1"], ["list"], ["history", "c-1"], ["diagnose", "e-1"]):
        run(*command, "--store", url, "--log-level", "warning", "--log-format", "json")
        run("--store", url, *command)
        run(*command, env=_env(PERDURE_STORE=url, PERDURE_LOG_FORMAT="json"))
    # the subcommand's --store wins over the group's and the environment's
    assert "g-1" in run("--store", "sqlite:///elsewhere.db", "status", "g-1", "--store", url, cwd=tmp_path).out


def test_bare_perdure_prints_the_usage(tmp_path):
    ran = run(code=2, cwd=tmp_path)
    assert ran.out.startswith("Usage: perdure [OPTIONS] COMMAND [ARGS]...") and "Commands:" in ran.out
    assert not (tmp_path / "perdure.db").exists()


def _env(**extra: str) -> dict[str, str]:
    from .helpers import environment

    return environment(**extra)


def test_rewind_restart_and_reset_from_the_command_line(url, worker):
    run("start", "boom", "--id", "b-1", "--store", url)
    run("start", "quick", "4", "--id", "q-1", "--store", url)
    worker.wait_for(lambda: json.loads(run("status", "b-1", "--json", "--store", url).out)["status"] == "FAILED")
    assert json.loads(run("result", "q-1", "--wait", "20", "--store", url).out) == 5

    assert run("rewind", "b-1", "--reason", "stock refilled", "--store", url).out == "rewound b-1\n"
    worker.wait_for(lambda: run("history", "b-1", "--store", url).out.count("ExecutionFailed") == 2)  # again
    table = run("history", "b-1", "--all", "--store", url).out
    assert table.splitlines()[0].split()[:3] == ["#", "TURN", "TIME"]
    assert "undid events 0 to here: stock refilled" in table
    err = run("rewind", "q-1", "--store", url, code=1).err
    assert err == "error: cannot rewind instance 'q-1': it is COMPLETED; only a FAILED instance can be rewound\n"
    counted = run("rewind", "--query", "--status", "FAILED", "--dry-run", "--store", url).out
    assert counted.startswith("1 instance FAILED match")

    assert run("restart", "q-1", "--new-id", "q-2", "--store", url).out == "q-2\n"
    assert json.loads(run("result", "q-2", "--wait", "20", "--store", url).out) == 5
    turns = [e["turn"] for e in json.loads(run("history", "q-1", "--all", "--json", "--store", url).out)]
    assert turns[0] == 1 and turns[-1] == 2
    new_run = run("reset", "q-1", "--to-turn", "1", "--reason", "again", "--store", url).out.strip()
    worker.wait_for(lambda: json.loads(run("status", "q-1", "--json", "--store", url).out)["run_id"] == new_run)
    assert json.loads(run("result", "q-1", "--wait", "20", "--store", url).out) == 5
    err = run("reset", "q-1", "--to-turn", "7", "--store", url, code=1).err
    assert err == "error: cannot reset instance 'q-1': its history has turns 1 to 2, not 7\n"
