"""Diagnosis of workers and capacity: no worker (none alive, or none with the code) versus
a backlog (compatible workers, all busy), and slow activities."""

from __future__ import annotations

import threading
import time

import pytest

import perdure
from perdure.store.base import WorkerRecord

from .helpers import eventually, fast_worker, verdict_becomes

app = perdure.App()
gate = threading.Event()


@app.activity
def hog(_: object) -> str:
    gate.wait(10)
    return "done"


@app.activity
def quick(n: int) -> int:
    return n


@app.activity
def step(n: int) -> int:
    if n == "slow":
        gate.wait(10)
    return n


@app.orchestration
async def hogging(ctx: perdure.OrchestrationContext, _: None) -> str:
    return await ctx.call_activity(hog, None)


@app.orchestration
async def small(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(quick, n)


@app.orchestration
async def steps(ctx: perdure.OrchestrationContext, _: None) -> list:
    done = [await ctx.call_activity(step, i) for i in range(3)]
    done.append(await ctx.call_activity(step, "slow"))
    return done


@app.orchestration
async def geocoding(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.call_activity("geocode", "10 Downing St")  # registered by no worker here


# The same orchestrations without the activity `quick`: a worker of an older deploy.
old_app = perdure.App()
old_app.orchestration(small)
old_app.orchestration(geocoding)


@pytest.fixture(autouse=True)
def _open_gate():
    gate.clear()
    yield
    gate.set()


def test_with_no_live_worker_due_work_is_no_worker(store, client):
    iid = client.start(small, 1)
    d = client.diagnose(iid)
    assert d.verdict == "no_worker" and d.status == "PENDING"
    e = d.top.evidence
    assert (e["kind"], e["name"], e["due"]) == ("orchestration", "small", 1)
    assert e["live_workers"] == [] and "no live worker at all" in d.top.summary
    assert "perdure worker --app" in d.top.mitigation


def test_a_worker_that_stopped_heartbeating_is_not_alive(store, client):
    now = store.clock()
    store.heartbeat(WorkerRecord("w-crashed", "host-a", 99, ("small",), ("quick",), now, now))
    iid = client.start(small, 1)
    assert client.diagnose(iid).verdict == "progressing"  # w-crashed still counts as alive
    time.sleep(0.3)
    d = client.diagnose(iid, worker_timeout=0.2)
    assert d.verdict == "no_worker"
    assert [w["worker_id"] for w in d.top.evidence["stale_workers"]] == ["w-crashed"]


def test_an_activity_no_live_worker_registered_is_no_worker(store, client):
    with fast_worker(old_app, store):
        iid = client.start(geocoding, None)
        d = verdict_becomes(client, iid, "no_worker")
    e = d.top.evidence
    assert (e["kind"], e["name"]) == ("activity", "geocode")
    [worker] = e["live_workers"]
    assert "geocode" not in worker["activities"] and "geocoding@1" in worker["orchestrations"]
    assert "no live worker has activity 'geocode' registered" in d.top.summary


def _hog_the_only_slot(client: perdure.Client) -> str:
    hogger = client.start(hogging, None)

    def hog_running() -> bool:
        return any(t.lease_owner for t in client.store.activity_tasks(hogger))

    eventually(hog_running, what="the hog activity to run")
    return hogger


def test_busy_compatible_workers_are_a_backlog_not_a_missing_worker(store, client):
    with fast_worker(app, store, activity_concurrency=1):
        hogger = _hog_the_only_slot(client)
        iid = client.start(small, 7)

        def busy_backlog() -> perdure.Diagnosis | None:
            d = client.diagnose(iid, backlog_after=0.2)
            # the heartbeat carrying "1 activity running" may lag the first backlog verdict
            return d if d.verdict == "backlog" and d.top.evidence["activities_running"] else None

        d = eventually(busy_backlog, what="a backlog behind the busy worker")
        assert "no_worker" not in d.codes
        e = d.top.evidence
        assert (e["kind"], e["name"], e["activities_running"], e["activity_slots"]) == (
            "activity",
            "quick",
            1,
            1,
        )
        assert e["oldest_due_s"] >= 0.2 and e["queue"]["activity_locked"] == 1  # rounded evidence
        # below the threshold the same queue is just progress
        assert client.diagnose(iid, backlog_after=60).verdict == "progressing"
        # and the instance holding the slot runs a slow activity (absolute threshold)
        slow = verdict_becomes(client, hogger, "slow_activity", slow_activity_after=0.2)
        assert slow.top.evidence["activity"] == "hog" and slow.top.evidence["worker_alive"]
        gate.set()
        assert client.wait(iid, timeout=10).output == 7


def test_a_live_worker_without_the_activity_is_no_worker_not_a_backlog(store, client):
    # only a worker of an older deploy (without `quick`) runs
    with fast_worker(old_app, store):
        iid = client.start(small, 7)
        eventually(lambda: client.store.activity_tasks(iid), what="the quick task")
        time.sleep(0.3)  # older than the backlog threshold: still not a backlog
        d = client.diagnose(iid, backlog_after=0.2)
    assert d.verdict == "no_worker" and "backlog" not in d.codes
    e = d.top.evidence
    assert (e["kind"], e["name"], e["waiting_s"] > 0.2) == ("activity", "quick", True)
    assert [w["activities"] for w in e["live_workers"]] == [[]]


def test_an_activity_far_slower_than_its_own_history_is_slow(store, client):
    with fast_worker(app, store):
        iid = client.start(steps, None)
        d = verdict_becomes(client, iid, "slow_activity", slow_activity_floor=0.3)
        gate.set()
        client.wait(iid, timeout=10)
    e = d.top.evidence
    assert (e["activity"], e["earlier_runs"], e["attempt"]) == ("step", 3, 1)
    # evidence figures are rounded to milliseconds: allow for it
    assert e["running_s"] >= max(0.3, 10 * e["median_s"]) - 0.01 and e["threshold_s"] >= 0.3
    assert "its median" in d.top.summary and e["worker_alive"] is True


def test_an_activity_held_by_a_stopped_worker_is_retried_after_its_lease(store, client):
    with fast_worker(old_app, store):
        iid = client.start(geocoding, None)
        eventually(lambda: client.store.activity_tasks(iid), what="the geocode task")
        # a worker that has since died took the task: no heartbeat row, lease still running
        [held] = store.lock_activities("ghost-worker", lease_seconds=60, names=["geocode"])
        d = client.diagnose(iid)
    assert d.verdict == "progressing"
    [item] = d.top.evidence["waiting_on"]
    assert (item["state"], item["worker"]) == ("orphaned", "ghost-worker")
    assert item["lease_expires_at"] is not None and "held by stopped worker" in d.top.summary
    assert held.lease_owner == "ghost-worker"
