"""The fleet report (counts, ages, stalled instances by verdict, signals) and the
``perdure diagnose`` command."""

from __future__ import annotations

import json

import pytest

import perdure
from perdure.core.history import TurnStarted
from perdure.diagnosis import diagnose_all
from perdure.store.base import NewInstance, TurnCommit
from perdure.store.sqlite import SQLiteStore
from perdure.testing.faults import FakeClock
from tests.cli.helpers import perdure as perdure_command

from .helpers import eventually, fast_worker, has_event

app = perdure.App()


@app.activity
def add(n: int) -> int:
    return n + 1


@app.orchestration
async def quick(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(add, n)


@app.orchestration
async def payment(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.wait_for_event("PaymentConfirmed")


def _fleet(client: perdure.Client) -> None:
    """One of each: completed, waiting for an event, waiting with a near-miss event
    received, and (once the worker is gone) pending with no worker."""
    with fast_worker(app, client.store):
        client.wait(client.start(quick, 1, instance_id="f-done"), timeout=10)
        for iid in ("f-wait", "f-typo"):
            client.start(payment, None, instance_id=iid)
            eventually(lambda iid=iid: client.get(iid).status is perdure.OrchestrationStatus.RUNNING)
        client.raise_event("f-typo", "paymentconfirmed")
        eventually(lambda: has_event(client, "f-typo", "paymentconfirmed"))
    client.start(quick, 2, instance_id="f-pending")


def test_the_fleet_report_counts_ages_and_groups_stalled_instances_by_verdict(store, client):
    _fleet(client)
    report = client.diagnose_all(stalled_after=0)
    assert {k: v for k, v in report.totals.items() if v} == {
        "COMPLETED": 1,
        "RUNNING": 2,
        "PENDING": 1,
    }
    assert report.counts == {"payment": {"RUNNING": 2}, "quick": {"COMPLETED": 1, "PENDING": 1}}
    age = report.running_age
    assert age["count"] == 2 and [o["instance_id"] for o in age["oldest"]] == ["f-wait", "f-typo"]
    assert age["max_s"] >= age["p95_s"] >= age["p50_s"] > 0
    assert report.stalled_total == 3 and report.workers == ()
    grouped = {str(code): [s.instance_id for s in group] for code, group in report.stalled.items()}
    assert grouped == {
        "no_worker": ["f-pending"],
        "event_name_mismatch": ["f-typo"],
        "waiting_for_event": ["f-wait"],
    }
    assert sorted(s.instance_id for s in report.stuck) == ["f-pending", "f-typo", "f-wait"]
    signals = {s.signal: s.state for s in report.signals}
    assert signals["external event receipt"] == "incident"
    assert signals["workers and queues"] == "incident"
    assert signals["replay / history size"] == "normal" and report.state == "incident"
    assert json.loads(json.dumps(report.to_dict()))["stalled"]["no_worker"][0]["verdict"] == ("no_worker")
    calm = client.diagnose_all(stalled_after=3600)
    assert calm.stalled_total == 0 and calm.stalled == {}


def running(store: perdure.Store, iid: str) -> None:
    """Create ``iid`` and commit its first turn by hand (RUNNING, progress now)."""
    store.create_instance(NewInstance(iid, "wf", None))
    [item] = store.lock_orchestrations("w", lease_seconds=30, instance_ids=[iid])
    events = [TurnStarted(timestamp=store.clock()), *(m.event for m in item.messages)]
    store.commit_turns(
        [
            TurnCommit(
                iid,
                item.lease_token,
                1,
                events,
                [m.message_id for m in item.messages],
                perdure.OrchestrationStatus.RUNNING,
            )
        ]
    )


def test_running_age_percentiles_are_nearest_rank_and_the_diagnosed_are_bounded():
    clock = FakeClock()
    store = SQLiteStore(":memory:", clock=clock)
    try:
        for n in range(20):
            running(store, f"r{n:02}")
            clock.advance(1)
        report = diagnose_all(store, thresholds=perdure.diagnosis.Thresholds(stalled_after=5), limit=4, oldest=3)
    finally:
        store.close()
    age = report.running_age  # ages are 1 s ... 20 s
    assert (age["count"], age["p50_s"], age["p95_s"], age["max_s"]) == (20, 10.0, 19.0, 20.0)
    assert [o["instance_id"] for o in age["oldest"]] == ["r00", "r01", "r02"]
    assert report.stalled_total == 15  # progress before now - 5 s: r00 ... r14
    assert sum(len(g) for g in report.stalled.values()) == 4


# --- the command line ----------------------------------------------------------------------


def run(url: str, *args: str, code: int = 0) -> str:
    """``perdure --store URL ARGS`` in a subprocess: its stdout, or its stderr if it failed."""
    result = perdure_command("--store", url, *args, code=code)
    return result.out if code == 0 else result.err


def test_perdure_diagnose_prints_the_verdict_and_its_json_has_the_same_fields(store_url):
    store = perdure.open_store(store_url)
    try:
        perdure.Client(store).start(quick, 1, instance_id="c-1")
    finally:
        store.close()
    text = run(store_url, "diagnose", "c-1")
    assert "verdict: no_worker" in text and "fix: Start a worker" in text
    data = json.loads(run(store_url, "diagnose", "c-1", "--json"))
    assert data["verdict"] == "no_worker" and data["stuck"] is True
    assert data["instance_id"] == "c-1" and data["status"] == "PENDING"
    assert set(data["findings"][0]) == {"code", "summary", "evidence", "mitigation"}
    assert data["findings"][0]["evidence"]["name"] == "quick"


def test_perdure_diagnose_without_an_id_prints_the_fleet_report(store_url):
    store = perdure.open_store(store_url)
    try:
        perdure.Client(store).start(quick, 1, instance_id="c-1")
    finally:
        store.close()
    text = run(store_url, "diagnose", "--stalled-after", "0")
    assert "fleet report" in text and "no_worker (1)" in text and "signals:" in text
    data = json.loads(run(store_url, "diagnose", "--json", "--stalled-after", "0"))
    assert data["stalled_total"] == 1 and list(data["stalled"]) == ["no_worker"]
    assert {s["signal"] for s in data["signals"]} >= {"orchestration age distribution"}


@pytest.mark.parametrize("args", [["diagnose", "nope"], ["diagnose", "nope", "--json"]])
def test_perdure_diagnose_of_an_unknown_id_is_a_one_line_error(tmp_path, args):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    perdure.open_store(url).close()
    err = run(url, *args, code=2)
    assert err == "error: no instance with id 'nope'\n"


def test_the_async_client_diagnoses_too(store):
    import asyncio

    async def main() -> tuple[perdure.Diagnosis, perdure.FleetReport]:
        client = perdure.AsyncClient(store)
        iid = await client.start(quick, 1)
        return await client.diagnose(iid, backlog_after=1), await client.diagnose_all(stalled_after=0)

    d, report = asyncio.run(main())
    assert d.verdict == "no_worker" and list(report.stalled) == ["no_worker"]
