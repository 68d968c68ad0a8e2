"""Diagnosis across sub-orchestrations (the chain down to the stuck child), of history
bloat, and of messages that were dead-lettered before they could reach an instance."""

from __future__ import annotations

import perdure
from perdure.core.history import EventRaised
from perdure.store.base import Message

from .helpers import eventually, fast_worker, verdict_becomes

app = perdure.App()


@app.activity
def item(n: int) -> str:
    return "x" * 40 + str(n)


@app.orchestration
async def leaf(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.wait_for_event("LeafGo")


@app.orchestration
async def middle(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.call_sub_orchestration(leaf, None, instance_id=f"{ctx.instance_id}-leaf")


@app.orchestration
async def top(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.call_sub_orchestration(middle, None, instance_id=f"{ctx.instance_id}-mid")


@app.orchestration
async def fan_out_then_wait(ctx: perdure.OrchestrationContext, n: int) -> object:
    await ctx.when_all([ctx.call_activity(item, i) for i in range(n)])
    return await ctx.wait_for_event("Done")


@app.orchestration
async def waits_for_go(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.wait_for_event("Go")


def test_a_parent_of_a_stuck_child_shows_the_chain_down_to_the_childs_diagnosis(store, client):
    with fast_worker(app, store):
        client.start(top, None, instance_id="t1")
        d = verdict_becomes(client, "t1", "child_stuck")
        e = d.top.evidence
        assert [link["instance_id"] for link in e["chain"]] == ["t1-mid", "t1-mid-leaf"]
        assert [link["verdict"] for link in e["chain"]] == ["child_stuck", "waiting_for_event"]
        root = e["root_cause"]
        assert (root["instance_id"], root["code"]) == ("t1-mid-leaf", "waiting_for_event")
        assert root["evidence"]["events"][0]["name"] == "LeafGo"
        assert e["child_diagnosis"]["verdict"] == "child_stuck"
        assert "perdure diagnose t1-mid-leaf" in d.top.mitigation
        assert "2 levels down" in d.top.summary
        client.raise_event("t1-mid-leaf", "LeafGo", "go")
        assert client.wait("t1", timeout=10).output == "go"
    assert client.diagnose("t1").verdict == "completed"


def test_a_long_history_is_history_bloat_with_its_replay_cost(store, client):
    with fast_worker(app, store, cache_size=0):  # no state cache: every turn replays
        iid = client.start(fan_out_then_wait, 20)
        eventually(lambda: client.diagnose(iid).verdict == "waiting_for_event")
        d = client.diagnose(iid, history_events=40)
        by_bytes = client.diagnose(iid, history_bytes=1_000)
    assert d.codes[:2] == ["history_bloat", "waiting_for_event"]
    e = d.top.evidence
    assert e["history_events"] >= 42 and e["threshold_events"] == 40
    assert e["full_replays"] >= 1 and e["replayed_events"] >= e["full_replays"]
    assert e["turns"] >= 2 and "continue_as_new" in d.top.mitigation
    assert by_bytes.verdict == "history_bloat" and by_bytes.top.evidence["history_bytes"] > 1_000


def test_an_event_dead_lettered_before_its_instance_existed_is_reported(store_url):
    # tries are few and fast here, so the undeliverable event is dead-lettered at once
    store = perdure.open_store(store_url, max_deliveries=2, defer_backoff=0.01, defer_backoff_cap=0.01)
    try:
        client = perdure.Client(store)
        event = EventRaised(name="Go", input=1, timestamp=store.clock())
        store.enqueue_messages([Message("late-1", event)])  # sent before the start: too early
        with fast_worker(app, store):
            eventually(lambda: store.dead_letters(instance_id="late-1"), what="a dead letter")
            client.start(waits_for_go, None, instance_id="late-1")
            d = eventually(lambda: "waiting_for_event" in (d := client.diagnose("late-1")).codes and d)
    finally:
        store.close()
    assert d.codes == ["dead_letter", "waiting_for_event"]
    [letter] = d.top.evidence["dead_letters"]
    assert (letter["event"], letter["reason"], letter["delivery_count"]) == (
        "EventRaised 'Go'",
        "instance_not_found",
        2,
    )
    assert "perdure raise late-1" in d.top.mitigation
