"""Every command line the diagnosis prints runs, as printed (placeholders filled in), through
the real ``perdure`` entry point. The docs' command lines are run by ``tests/docs``."""

from __future__ import annotations

import re
import shlex

import perdure

from .cli_app import app
from .helpers import ROOT, Background, environment
from .helpers import perdure as run

APP = "tests.cli.cli_app:app"
PLACEHOLDERS = {"module:app": APP, "NAME": "never", "'<json payload>'": "'{}'", "'<json>'": "'{}'"}


def printed_commands(client: perdure.Client, instance_id: str) -> list[str]:
    """The ``perdure ...`` command lines in the instance's diagnosis."""
    found = []
    for finding in client.diagnose(instance_id).findings:
        found += re.findall(r"`(perdure [^`]+)`", finding.mitigation)
    return found


def fill(command: str) -> list[str]:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    return shlex.split(command)[1:]


def test_the_commands_the_diagnosis_prints_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'printed.db'}"
    store = perdure.open_store(url)
    client = perdure.Client(store)
    with perdure.Worker(app, store, poll_interval=0.05):
        client.wait(client.start("boom", None, instance_id="failed-1"), timeout=20)
        for iid in ("typo-1", "paused-1"):
            client.start("forever", None, instance_id=iid)
        _until(lambda: all(client.get(i).status.value == "RUNNING" for i in ("typo-1", "paused-1")))
        client.raise_event("typo-1", "Never")
        client.suspend("paused-1")
        _until(lambda: client.get("paused-1").status.value == "SUSPENDED")
    client.start("quick", 1, instance_id="orphan-1")
    commands = {iid: printed_commands(client, iid) for iid in ("failed-1", "typo-1", "paused-1", "orphan-1")}
    store.close()

    assert commands["failed-1"] == ["perdure status failed-1"]
    assert "perdure raise typo-1 never '<json payload>'" in commands["typo-1"]
    assert commands["paused-1"][0] == "perdure resume paused-1"
    assert commands["orphan-1"] == [f"perdure worker --app module:app --store {url}"]
    env = environment(PERDURE_STORE=url)
    for iid in ("failed-1", "typo-1", "paused-1"):
        for command in commands[iid]:
            run(*fill(command), env=env, cwd=ROOT)
    worker = Background(*fill(commands["orphan-1"][0]), cwd=ROOT)
    worker.wait_for_log("instance 'orphan-1' completed")
    assert worker.stop().code == 0


def _until(condition, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)
