"""``perdure terminate|suspend|resume|purge --query``: the filters of ``list``, a count
first, a confirmation unless ``--yes``."""

from __future__ import annotations

import json

import pytest

import perdure

from .cli_app import app
from .helpers import perdure as run


@pytest.fixture
def url(tmp_path):
    """Three live ``forever`` instances (load-0..2), one other live one, two completed."""
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    store = perdure.open_store(url)
    client = perdure.Client(store)
    with perdure.Worker(app, store, poll_interval=0.05):
        for i in range(2):
            client.wait(client.start("quick", i, instance_id=f"done-{i}"), timeout=20)
    for i in range(3):
        client.start("forever", None, instance_id=f"load-{i}")
    client.start("forever", None, instance_id="keep-1")
    store.close()
    return url


def _statuses(url: str) -> dict[str, str]:
    items = json.loads(run("list", "--json", "--store", url).out)["items"]
    return {i["instance_id"]: i["status"] for i in items}


def test_a_dry_run_counts_and_changes_nothing(url):
    before = _statuses(url)
    out = run("terminate", "--query", "--prefix", "load-", "--dry-run", "--store", url).out
    assert out == "3 instances live (PENDING, RUNNING or SUSPENDED) match (id prefix 'load-')\n"
    assert _statuses(url) == before


def test_without_yes_it_asks_and_a_no_changes_nothing(url):
    before = _statuses(url)
    ran = run("terminate", "--query", "--prefix", "load-", "--store", url, stdin="n\n", code=1)
    assert "terminate 3 instances? [y/N]" in ran.err
    assert ran.err.endswith("error: not confirmed, nothing was changed (--yes skips the question)\n")
    assert _statuses(url) == before
    run("terminate", "--query", "--prefix", "load-", "--store", url, stdin="", code=1)  # no answer: no
    assert _statuses(url) == before


def test_confirmed_it_acts_on_the_matching_instances_only(url):
    ran = run("suspend", "--query", "--prefix", "load-", "--reason", "maintenance", "--store", url, stdin="y\n")
    assert ran.out.endswith("suspend requested for 3 instances\n")
    store = perdure.open_store(url)
    try:
        pending = {iid: [type(m.event).__name__ for m in store.pending_messages(iid)] for iid in _statuses(url)}
    finally:
        store.close()
    assert all(pending[f"load-{i}"][-1] == "ExecutionSuspended" for i in range(3))
    assert "ExecutionSuspended" not in pending["keep-1"]


def test_purge_query_deletes_finished_instances_by_status_and_age(url):
    assert "0 instances" in run("purge", "--query", "--created-before", "1h", "--yes", "--store", url).out
    ran = run("purge", "--query", "--status", "COMPLETED", "--yes", "--store", url)
    assert ran.out.endswith("purged 2 instances\n")
    assert sorted(_statuses(url)) == ["keep-1", "load-0", "load-1", "load-2"]


def test_terminate_query_with_yes_terminates_them(url):
    store = perdure.open_store(url)
    with perdure.Worker(app, store, poll_interval=0.05):
        ran = run("terminate", "--query", "--name", "forever", "--prefix", "load-", "--yes", "--store", url)
        assert ran.out.endswith("terminate requested for 3 instances\n")
        client = perdure.Client(store)
        states = [client.wait(f"load-{i}", timeout=20) for i in range(3)]
    store.close()
    assert {s.status.value for s in states} == {"TERMINATED"}
    assert _statuses(url)["keep-1"] == "RUNNING"
