"""A queued message the worker cannot decode (a newer version wrote it, or it was damaged)
is dead-lettered: the worker goes on with everything else, including the instance it was
sent to, and the diagnosis says what happened."""

from __future__ import annotations

import time

import perdure
from perdure.core.history import ActivityFailed
from perdure.store.base import Message

app = perdure.App()


@app.orchestration
async def waits(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.wait_for_event("Go")


def running(client: perdure.Client, iid: str) -> None:
    deadline = time.monotonic() + 10
    while client.get(iid).status != "RUNNING":
        assert time.monotonic() < deadline, f"{iid} never started"
        time.sleep(0.01)


def test_an_undecodable_message_is_dead_lettered_and_nothing_else_stops(store, client):
    with perdure.Worker(app, store, poll_interval=0.05):
        bad, good = client.start(waits, None), client.start(waits, None)
        running(client, bad)
        running(client, good)
        corrupt = ActivityFailed(timestamp=1.0, task_id=7, failure="not a failure")  # type: ignore[arg-type]
        store.enqueue_messages([Message(bad, corrupt, 1)])
        client.raise_event(good, "Go", "good")
        assert client.wait(good, timeout=20).output == "good"
        client.raise_event(bad, "Go", "bad")
        assert client.wait(bad, timeout=20).output == "bad"
    d = client.diagnose(bad)
    assert "dead_letter" in d.codes
    finding = next(f for f in d.findings if f.code == "dead_letter")
    [letter] = finding.evidence["dead_letters"]
    assert letter["reason"] == "undecodable" and letter["event"].startswith("an undecodable message")
    assert "newer perdure version" in finding.mitigation
