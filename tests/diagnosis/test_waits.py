"""Diagnosis of live instances waiting on something: external events (and near-miss
names), timers, retries, a suspension; and a progressing instance is never called stuck."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import perdure
from perdure.core.history import TimerCreated
from perdure.diagnosis import Diagnoser

from .helpers import eventually, fast_worker, has_event, verdict_becomes

app = perdure.App()
release = threading.Event()


@app.activity
def step(n: int) -> int:
    time.sleep(0.005)
    return n


@app.activity
def gateway(_: object) -> str:
    raise ConnectionError("payments-api.internal: connection refused")


@app.activity
def flaky_then_blocks(_: object) -> str:
    if perdure.activity_info().attempt == 1:
        raise TimeoutError("upstream timed out")
    release.wait(10)
    return "ok"


@app.orchestration
async def payment(ctx: perdure.OrchestrationContext, timeout_s: float | None) -> object:
    timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
    return await ctx.wait_for_event("PaymentConfirmed", timeout=timeout)


@app.orchestration
async def nap(ctx: perdure.OrchestrationContext, seconds: float) -> str:
    await ctx.create_timer(timedelta(seconds=seconds))
    return "rested"


@app.orchestration
async def retrying(ctx: perdure.OrchestrationContext, _: None) -> str:
    policy = perdure.RetryPolicy(max_attempts=4, first_delay=timedelta(hours=1))
    return await ctx.call_activity(gateway, None, retry=policy)


@app.orchestration
async def second_attempt(ctx: perdure.OrchestrationContext, _: None) -> str:
    policy = perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(milliseconds=10))
    return await ctx.call_activity(flaky_then_blocks, None, retry=policy)


@app.orchestration
async def ship(ctx: perdure.OrchestrationContext, n: int) -> int:
    return sum(await ctx.when_all([ctx.call_activity(step, i) for i in range(n)]))


@app.orchestration
async def busy(ctx: perdure.OrchestrationContext, rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += await ctx.call_activity(step, i)
        if i % 4 == 0:
            await ctx.create_timer(timedelta(milliseconds=20))
        if i == rounds // 2:
            total += await ctx.call_sub_orchestration(ship, 3)
    return total


def running(client: perdure.Client, iid: str) -> None:
    eventually(lambda: client.get(iid).status is perdure.OrchestrationStatus.RUNNING)


@pytest.mark.parametrize("timeout_s", [None, 3600.0])
def test_waiting_for_an_event_names_it_since_when_and_its_timeout(store, client, timeout_s):
    with fast_worker(app, store):
        iid = client.start(payment, timeout_s)
        d = verdict_becomes(client, iid, "waiting_for_event")
    assert d.stuck and d.codes == ["waiting_for_event"]
    [event] = d.top.evidence["events"]
    assert event["name"] == "PaymentConfirmed" and event["waiting_s"] >= 0
    if timeout_s is None:
        assert event["timeout_at"] is None and "no timeout" in d.top.summary
        assert "timeout=" in d.top.mitigation
    else:
        assert event["timeout_at"] is not None
        assert 3500 < event["times_out_in_s"] <= 3600


def test_a_wait_recorded_after_the_diagnosis_began_is_measured_from_after_it_was_read(store, client):
    # Forces the interleaving: the diagnosis begins, then the turn that sets a one-hour
    # timeout commits, then the diagnosis reads it. Measured from the moment the diagnosis
    # began, the wait would have more than an hour left.
    diagnoser = Diagnoser(store)
    time.sleep(0.05)
    with fast_worker(app, store):
        iid = client.start(payment, 3600.0)
        eventually(lambda: any(isinstance(e, TimerCreated) for e in client.get(iid, history=True).history or []))
    d = diagnoser.diagnose(iid)
    [event] = d.top.evidence["events"]
    assert 3599 < event["times_out_in_s"] <= 3600


@pytest.mark.parametrize("sent", ["paymentConfirmed", "payment_confirmed", "Payment Confirmed"])
def test_a_near_miss_event_name_is_caught_and_both_names_are_given(store, client, sent):
    with fast_worker(app, store):
        iid = client.start(payment, None)
        running(client, iid)
        client.raise_event(iid, sent, {"ok": True})
        eventually(lambda: has_event(client, iid, sent))
        d = client.diagnose(iid)
    assert d.codes == ["event_name_mismatch", "waiting_for_event"]
    evidence = d.top.evidence
    assert (evidence["awaited"], evidence["received"]) == ("PaymentConfirmed", sent)
    assert evidence["received_count"] == 1 and evidence["received_where"] == ["history"]
    assert f"perdure raise {iid} PaymentConfirmed" in d.top.mitigation
    assert d.finding("waiting_for_event").evidence["received_names"] == [sent]


def test_an_unrelated_event_name_is_not_a_near_miss(store, client):
    with fast_worker(app, store):
        iid = client.start(payment, None)
        running(client, iid)
        client.raise_event(iid, "PaymentRefused")
        eventually(lambda: has_event(client, iid, "PaymentRefused"))
        d = client.diagnose(iid)
    assert d.codes == ["waiting_for_event"]


def test_a_far_timer_is_pending_and_a_near_one_is_progress(store, client):
    with fast_worker(app, store):
        far = client.start(nap, 2 * 3600)
        near = client.start(nap, 600)
        d = verdict_becomes(client, far, "timer_pending")
        running(client, near)
        near_d = client.diagnose(near)
    assert 7100 < d.top.evidence["due_in_s"] <= 7200 and d.top.evidence["threshold_s"] == 3600
    assert not near_d.stuck and near_d.top.evidence["waiting_on"][0]["kind"] == "timer"
    # the threshold is a parameter
    assert client.diagnose(near, timer_far=60).verdict == "timer_pending"


def test_a_suspended_instance_is_reported_with_the_reason(store, client):
    with fast_worker(app, store):
        iid = client.start(payment, None)
        running(client, iid)
        client.suspend(iid, reason="fraud review")
        eventually(lambda: client.get(iid).status is perdure.OrchestrationStatus.SUSPENDED)
        d = client.diagnose(iid)
    assert d.codes[0] == "suspended" and "waiting_for_event" in d.codes
    assert d.top.evidence["reason"] == "fraud review"
    assert f"perdure resume {iid}" in d.top.mitigation


def test_a_retrying_activity_gives_attempt_n_of_m_the_last_error_and_next_attempt_time(store, client):
    with fast_worker(app, store):
        iid = client.start(retrying, None)
        d = verdict_becomes(client, iid, "activity_retrying")
    e = d.top.evidence
    assert (e["name"], e["attempt"], e["max_attempts"], e["next_attempt"]) == ("gateway", 1, 4, 2)
    assert e["last_error_type"] == "ConnectionError"
    assert e["last_error_message"] == "payments-api.internal: connection refused"
    assert 3500 < e["next_attempt_in_s"] <= 3600 and e["next_attempt_at"].endswith("Z")
    assert "attempt 1 of 4 failed" in d.top.summary


def test_an_attempt_after_a_failure_is_reported_as_a_retry_in_progress(store, client):
    release.clear()
    with fast_worker(app, store):
        iid = client.start(second_attempt, None)
        try:
            d = eventually(
                lambda: (
                    (d := client.diagnose(iid)).verdict == "activity_retrying"
                    and d.top.evidence.get("state") == "running"
                    and d
                )
            )
        finally:
            release.set()
        assert client.wait(iid, timeout=10).output == "ok"
    e = d.top.evidence
    assert (e["attempt"], e["max_attempts"], e["state"]) == (2, 3, "running")
    assert (e["last_error_type"], e["last_error_message"]) == ("TimeoutError", "upstream timed out")
    assert "progressing" in d.codes  # the attempt itself runs


def test_a_progressing_instance_is_never_reported_as_stuck(store, client):
    verdicts: set[str] = set()
    with fast_worker(app, store):
        iid = client.start(busy, 12)
        while True:
            # default thresholds, but a scheduler hiccup of a loaded CI host (a 5 ms activity
            # held > 1 s) must not count as a slow activity here
            d = client.diagnose(iid, slow_activity_floor=3.0)
            verdicts.add(str(d.verdict))
            if d.status == "COMPLETED":
                break
            assert not d.stuck, d.to_dict()
            time.sleep(0.005)
        report = client.diagnose_all(stalled_after=0)
    assert verdicts == {"progressing", "completed"}
    assert report.stuck == []


def test_an_instance_started_for_later_is_a_pending_timer_not_a_missing_worker(client):
    from datetime import UTC, datetime

    later = datetime.now(UTC) + timedelta(hours=3)
    iid = client.start(payment, None, start_at=later)
    d = client.diagnose(iid)
    assert d.codes == ["timer_pending"] and d.status == "PENDING"
    assert d.top.evidence["kind"] == "start" and 10_700 < d.top.evidence["due_in_s"] <= 10_800
