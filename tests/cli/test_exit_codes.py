"""Exit codes a script can rely on: 0 completed, 1 failed or terminated, 2 not found or
usage, 3 timed out; for ``start --wait`` and ``result``."""

from __future__ import annotations

import json

import pytest

import perdure

from .cli_app import app
from .helpers import perdure as run

COMPLETED, FAILED, NOT_FOUND, TIMED_OUT = 0, 1, 2, 3


@pytest.fixture
def url(tmp_path):
    """A store with a completed, a failed, a terminated and a running instance (run by an
    in-process worker: these tests are about the CLI's reading of outcomes)."""
    url = f"sqlite:///{tmp_path / 'codes.db'}"
    store = perdure.open_store(url)
    client = perdure.Client(store)
    with perdure.Worker(app, store, poll_interval=0.05):
        client.start("quick", 1, instance_id="ok")
        client.start("boom", None, instance_id="bad")
        client.start("forever", None, instance_id="stopped")
        client.start("forever", None, instance_id="running")
        client.terminate("stopped", reason="operator said so")
        for iid in ("ok", "bad", "stopped"):
            client.wait(iid, timeout=20)
    store.close()
    return url


def test_result_exit_codes(url):
    assert json.loads(run("result", "ok", "--store", url, code=COMPLETED).out) == 2
    failed = run("result", "bad", "--store", url, code=FAILED)
    assert failed.out == "" and failed.err == "error: instance 'bad' FAILED: ValueError: no stock left\n"
    terminated = run("result", "stopped", "--store", url, code=FAILED)
    assert terminated.err == "error: instance 'stopped' was TERMINATED: operator said so\n"
    assert run("result", "nope", "--store", url, code=NOT_FOUND).err == "error: no instance with id 'nope'\n"
    late = run("result", "running", "--wait", "0.3", "--store", url, code=TIMED_OUT)
    assert late.err == "error: instance 'running' is RUNNING: no result yet after waiting 0.3 s\n"
    data = json.loads(run("result", "bad", "--json", "--store", url, code=FAILED).out)
    assert data["status"] == "FAILED" and data["failure"]["message"] == "no stock left"


def test_start_wait_exit_codes(url):
    store = perdure.open_store(url)
    with perdure.Worker(app, store, poll_interval=0.05):
        done = run("start", "quick", "5", "--wait", "20", "--store", url, code=COMPLETED).out
        assert "COMPLETED" in done and "output" in done
        failed = run("start", "boom", "--wait", "20", "--json", "--store", url, code=FAILED).out
        assert json.loads(failed)["failure"]["type"] == "ValueError"
        late = run("start", "forever", "--wait", "0.3", "--store", url, code=TIMED_OUT)
        assert "is still" in late.err and "after 0.3 s" in late.err
    store.close()


def test_usage_errors_exit_2(url):
    assert run("result", "--store", url, code=NOT_FOUND).err.startswith("error: Missing argument")
    assert run("start", "quick", "--wait", "soon", "--store", url, code=2).err.count("\n") == 1


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path):
    """``perdure list | head -c 1``: the reader closes the pipe long before the listing (over
    the pipe's buffer) is written; perdure stops with exit 0 and no error line (it printed
    "error: [Errno 32] Broken pipe" and exited 1)."""
    import shlex
    import subprocess

    from .helpers import PERDURE, environment

    url = f"sqlite:///{tmp_path / 'many.db'}"
    store = perdure.open_store(url)
    perdure.Client(store).start_many("quick", [1] * 1500)
    store.close()
    command = (
        f"{shlex.quote(PERDURE)} list --limit 1500 --store {shlex.quote(url)} | head -c 1; exit ${{PIPESTATUS[0]}}"
    )
    listed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=environment(), timeout=60)
    assert (listed.returncode, listed.stderr, len(listed.stdout)) == (0, "", 1)
