"""``perdure worker``: what it logs (readable text or JSON lines with the instance's ids),
and how Ctrl-C stops it (gracefully, saying what it waits for; a second Ctrl-C at once)."""

from __future__ import annotations

import json
import re
import time

import pytest

import perdure

from .helpers import ROOT, Background
from .helpers import perdure as run

APP = "tests.cli.cli_app:app"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR)\s+(\S+) (.*)$")


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'w.db'}"


def _worker(url: str, *extra: str, banner: bool = True) -> Background:
    w = Background("worker", "--app", APP, "--store", url, "--poll-interval", "0.05", *extra, cwd=ROOT)
    if banner:
        w.wait_for_log(" serves ")
    return w


def test_the_worker_logs_orchestration_and_activity_lines_with_their_instance(url):
    w = _worker(url)
    run("start", "quick", "1", "--id", "q-1", "--store", url)
    run("start", "retrying", "7", "--id", "r-1", "--store", url)
    run("start", "boom", "--id", "b-1", "--store", url)
    for iid in ("q-1", "r-1", "b-1"):
        run("result", iid, "--wait", "20", "--store", url, code=None)
    w.wait_for_log("instance 'b-1' failed")
    ran = w.stop()
    assert ran.code == 0
    lines = [TEXT_LINE.match(line) for line in ran.err.splitlines()]
    assert all(lines), ran.err
    by_message = {m.group(3): (m.group(1), m.group(2)) for m in lines if m}
    assert by_message["quick got 1"] == ("INFO", "q-1")  # ctx.logger
    assert by_message["adding one to 1"] == ("INFO", "q-1/1")  # the user's own logger, inside an activity
    assert by_message["instance 'q-1' completed"] == ("INFO", "q-1")
    assert by_message["activity 'flaky' failed on attempt 1: ConnectionError: gateway timed out"] == (
        "WARNING",
        "r-1/1",
    )
    retry = [m for m in by_message if m.startswith("instance 'r-1' will retry a failed task after ConnectionError")]
    assert retry and by_message[retry[0]][0] == "INFO"
    assert by_message["instance 'b-1' failed: ValueError: no stock left"] == ("ERROR", "b-1")
    assert any(m.startswith("worker ") and f" serves {url}: orchestrations big_result, boom" in m for m in by_message)


def test_json_log_lines_carry_the_ids_as_fields(url):
    w = _worker(url, "--log-format", "json")
    run("start", "quick", "3", "--id", "j-1", "--store", url)
    run("result", "j-1", "--wait", "20", "--store", url)
    w.wait_for_log("\"instance 'j-1' completed\"")
    ran = w.stop()
    records = [json.loads(line) for line in ran.err.splitlines()]  # every line is JSON
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["time"]) for r in records)
    activity = next(r for r in records if r["message"] == "adding one to 3")
    assert (activity["instance_id"], activity["execution_id"], activity["task_id"]) == ("j-1", 1, 1)
    assert activity["logger"] == "cli_app" and activity["level"] == "INFO"
    orchestration = next(r for r in records if r["message"] == "quick got 3")
    assert (orchestration["instance_id"], orchestration["execution_id"], orchestration["task_id"]) == ("j-1", 1, None)
    banner = next(r for r in records if " serves " in r["message"])
    assert banner["instance_id"] is None and banner["message"].endswith("Ctrl-C stops it")


def test_log_level_warning_hides_info_lines(url):
    w = _worker(url, "--log-level", "WARNING", banner=False)
    run("start", "retrying", "1", "--id", "lv-1", "--store", url)
    run("result", "lv-1", "--wait", "20", "--store", url)
    ran = w.stop()
    assert "activity 'flaky' failed on attempt 1" in ran.err
    assert " INFO " not in ran.err


def test_ctrl_c_says_what_it_waits_for_and_lets_the_activity_finish(url):
    w = _worker(url)
    run("start", "sleepy", "1.5", "--id", "s-1", "--store", url)
    _wait_until_running(url, "s-1")
    w.interrupt()
    w.wait_for_log("stopping:")
    ran = w.stop()
    assert ran.code == 0
    assert "stopping: finishing the turns in hand, waiting up to 30 s for 1 running activity (nap) to finish" in ran.err
    assert "Ctrl-C again stops at once" in ran.err
    assert re.search(r"worker \S+ counted: activities 1", ran.err)


def test_a_second_ctrl_c_stops_at_once_and_another_worker_runs_the_activity_again(url):
    w = _worker(url, "--lease", "1")
    run("start", "sleepy", "30", "--id", "s-2", "--store", url)
    _wait_until_running(url, "s-2")
    w.interrupt()
    w.wait_for_log("stopping:")
    started = time.monotonic()
    w.interrupt()
    ran = w.stop(timeout=10)
    assert time.monotonic() - started < 5
    assert ran.code == 130
    assert "SIGINT again: stopping at once, abandoning 1 running activity (nap)" in ran.err
    assert "the leases expire within 1 s, and then another worker runs it again" in ran.err
    store = perdure.open_store(url)
    try:
        tasks = store.activity_tasks("s-2")
        assert [t.name for t in tasks] == ["nap"]  # still queued for the next worker, nothing lost
    finally:
        store.close()


def test_the_shutdown_timeout_releases_activities_still_running(url):
    w = _worker(url, "--shutdown-timeout", "0.2")
    run("start", "sleepy", "30", "--id", "s-3", "--store", url)
    _wait_until_running(url, "s-3")
    started = time.monotonic()
    ran = w.stop(timeout=20)
    assert ran.code == 0 and time.monotonic() - started < 10
    assert "waiting up to 0.2 s for 1 running activity (nap)" in ran.err
    assert "1 activities still running after the 0.2 s shutdown timeout (nap): their leases are released" in ran.err


def test_an_error_while_importing_the_app_shows_the_original_traceback(tmp_path, url):
    (tmp_path / "broken_app.py").write_text("import perdure\napp = perdure.App()\n1 / 0\n", encoding="utf-8")
    ran = run("worker", "--app", "broken_app:app", "--store", url, cwd=tmp_path, code=1)
    lines = ran.error_lines
    assert lines[0] == (
        "error: importing module 'broken_app' (--app broken_app:app) failed: ZeroDivisionError: division by zero"
    )
    assert lines[1] == "Traceback (most recent call last):"
    assert any('broken_app.py", line 3, in <module>' in line for line in lines)
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert "importlib" not in ran.err


def _wait_until_running(url: str, iid: str) -> None:
    """Until the instance's activity task is locked by a worker."""
    deadline = time.monotonic() + 20
    store = perdure.open_store(url)
    try:
        while not any(t.lease_token for t in store.activity_tasks(iid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        store.close()
