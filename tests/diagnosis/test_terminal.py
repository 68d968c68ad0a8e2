"""Diagnosis of finished instances: completed, failed (and why), terminated, nondeterminism."""

from __future__ import annotations

from datetime import timedelta

import pytest

import perdure

from .helpers import eventually, fast_worker

app = perdure.App()
CODE_VERSION = {"v": 1}


class CardDeclined(Exception):
    pass


@app.activity
def add(n: int) -> int:
    return n + 1


@app.activity
def charge(_: object) -> None:
    raise CardDeclined("card declined by issuer")


@app.activity
def reserve(_: object) -> str:
    return "reserved"


@app.orchestration
async def quick(ctx: perdure.OrchestrationContext, n: int) -> int:
    return await ctx.call_activity(add, n)


@app.orchestration
async def pay_with_retries(ctx: perdure.OrchestrationContext, _: None) -> None:
    policy = perdure.RetryPolicy(max_attempts=2, first_delay=timedelta(milliseconds=10))
    await ctx.call_activity(charge, None, retry=policy)


@app.orchestration
async def pay_once(ctx: perdure.OrchestrationContext, _: None) -> None:
    await ctx.call_activity(charge, None)


@app.orchestration
async def pay_then_wait(ctx: perdure.OrchestrationContext, _: None) -> str:
    try:
        await ctx.call_activity(charge, None)
    except perdure.ActivityError:
        return await ctx.wait_for_event("ManualRetry")
    return "paid"


@app.orchestration
async def approval(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.wait_for_event("Approve")


@app.orchestration
async def evolving(ctx: perdure.OrchestrationContext, _: None) -> str:
    # Version 2 of this code calls another activity first: a change that breaks replay.
    await ctx.call_activity("reserve" if CODE_VERSION["v"] == 1 else "reserve_v2", None)
    return await ctx.wait_for_event("Go")


def test_a_completed_instance_is_reported_completed_with_its_output(store, client):
    with fast_worker(app, store):
        iid = client.start(quick, 41)
        client.wait(iid, timeout=10)
    d = client.diagnose(iid)
    assert d.verdict == "completed" and not d.stuck and d.status == "COMPLETED"
    assert d.top.evidence["output"] == "42" and d.top.evidence["turns"] >= 2


def test_exhausted_retries_are_reported_failed_with_the_error_and_the_failing_task(store, client):
    with fast_worker(app, store):
        iid = client.start(pay_with_retries, None)
        client.wait(iid, timeout=10)
    d = client.diagnose(iid)
    assert d.verdict == "failed" and d.codes == ["failed"]
    evidence = d.top.evidence
    assert evidence["error_type"] == "perdure.errors.ActivityError"
    assert "card declined by issuer" in evidence["error_message"]
    task = evidence["failing_task"]
    assert (task["kind"], task["name"], task["attempt"], task["max_attempts"]) == (
        "activity",
        "charge",
        2,
        2,
    )
    assert task["error"].endswith("CardDeclined: card declined by issuer")
    assert "attempt 2 of 2" in d.top.mitigation


def test_an_activity_failing_without_retry_policy_is_the_verdict_of_the_failed_instance(store, client):
    with fast_worker(app, store):
        iid = client.start(pay_once, None)
        client.wait(iid, timeout=10)
    d = client.diagnose(iid)
    assert d.codes == ["activity_failed_no_retry", "failed"]
    evidence = d.top.evidence
    assert (evidence["activity"], evidence["attempt"], evidence["max_attempts"]) == ("charge", 1, None)
    assert evidence["error_message"] == "card declined by issuer"
    assert "RetryPolicy" in d.top.mitigation
    assert d.finding("failed").evidence["failing_task"]["name"] == "charge"


def test_a_caught_failure_without_retry_is_reported_behind_what_the_instance_waits_for(store, client):
    with fast_worker(app, store):
        iid = client.start(pay_then_wait, None)
        d = eventually(lambda: client.diagnose(iid).verdict == "waiting_for_event" and client.diagnose(iid))
    assert d.codes[:2] == ["waiting_for_event", "activity_failed_no_retry"]
    assert d.finding("activity_failed_no_retry").evidence["activity"] == "charge"


@app.orchestration
async def fragile_child(ctx: perdure.OrchestrationContext, _: None) -> None:
    raise ValueError("bad address")


@app.orchestration
async def parent(ctx: perdure.OrchestrationContext, _: None) -> None:
    await ctx.call_sub_orchestration(fragile_child, None, instance_id=f"{ctx.instance_id}-child")


def test_a_parent_failed_by_its_child_names_the_child_to_diagnose(store, client):
    with fast_worker(app, store):
        client.wait(client.start(parent, None, instance_id="p1"), timeout=10)
    d = client.diagnose("p1")
    assert d.codes == ["failed"] and d.top.evidence["error_type"] == "perdure.errors.SubOrchestrationError"
    task = d.top.evidence["failing_task"]
    assert (task["kind"], task["name"], task["instance_id"]) == ("sub_orchestration", "fragile_child", "p1-child")
    assert "perdure diagnose p1-child" in d.top.mitigation
    child = client.diagnose("p1-child")
    assert child.verdict == "failed" and child.top.evidence["error_message"] == "bad address"


def test_a_terminated_instance_is_reported_with_the_reason(store, client):
    with fast_worker(app, store):
        iid = client.start(approval, None)
        eventually(lambda: client.get(iid).status is perdure.OrchestrationStatus.RUNNING)
        client.terminate(iid, reason="duplicate order")
        client.wait(iid, timeout=10)
    d = client.diagnose(iid)
    assert d.verdict == "terminated" and d.top.evidence["reason"] == "duplicate order"
    assert "duplicate order" in d.top.summary


def test_nondeterminism_names_the_position_what_history_held_and_what_the_code_did(store, client, monkeypatch):
    monkeypatch.setitem(CODE_VERSION, "v", 1)
    with fast_worker(app, store, cache_size=0):  # every turn replays the full history
        iid = client.start(evolving, None)
        eventually(lambda: client.diagnose(iid).verdict == "waiting_for_event")
        CODE_VERSION["v"] = 2  # a deploy changed the code under the running instance
        client.raise_event(iid, "Go", 1)
        client.wait(iid, timeout=10)
    d = client.diagnose(iid)
    assert d.codes == ["nondeterminism", "failed"] and d.status == "FAILED"
    evidence = d.top.evidence
    assert evidence["history_held"] == "ActivityScheduled 'reserve' (task 1)"
    assert evidence["code_did"] == "ActivityScheduled 'reserve_v2' (task 1)"
    assert isinstance(evidence["position"], int)
    assert evidence["recorded_event"] == evidence["history_held"]  # read back from the store
    assert "new name" in d.top.mitigation


def test_an_unknown_instance_raises_instance_not_found(client):
    with pytest.raises(perdure.InstanceNotFoundError, match="nope"):
        client.diagnose("nope")
