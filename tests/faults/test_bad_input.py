"""Bad input: each gets a clear error and loses nothing.

Invalid instance ids, payloads that are not JSON or too large, unknown names, and a
corrupted stored event: the call fails (or the one instance fails) with an error that says
what is wrong, nothing half-written is left, and everything else carries on.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta

import pytest

import perdure
from perdure.store.base import InstanceQuery
from tests.faults.helpers import until

app = perdure.App()


@app.activity
def echo(value: object) -> object:
    return value


@app.activity
def unserialisable(_: None) -> object:
    return {1, 2, 3}


@app.orchestration
async def waits(ctx: perdure.OrchestrationContext, _: None) -> object:
    return await ctx.wait_for_event("go")


@app.orchestration
async def returns_a_set(ctx: perdure.OrchestrationContext, _: None) -> object:
    return {"a set": {1}}


@app.orchestration
async def bad_activity_result(ctx: perdure.OrchestrationContext, _: None) -> str:
    try:
        await ctx.call_activity(unserialisable, None)
    except perdure.ActivityError as err:
        return err.error_message
    return "?"


def nothing_stored(store: perdure.Store) -> bool:
    """True if the store holds no instance and no message."""
    return store.list_instances(InstanceQuery()).items == [] and (store.queue_stats().orchestration_depth == 0)


@pytest.mark.parametrize(
    ("bad_id", "message"),
    [
        ("", "must not be empty"),
        ("x" * 257, "257 characters long; the limit is 256"),
        ("line\nbreak", "control character"),
        ("nul\x00", "control character"),
        ("order::sub::3", "reserved sub-orchestration marker"),
        ("sub::order", "reserved sub-orchestration marker"),
        (42, "must be a string, got int"),
    ],
)
def test_an_invalid_instance_id_is_refused_before_anything_is_stored(store, client, bad_id, message):
    """Each malformed id is refused by ``start`` with the rule it breaks."""
    with pytest.raises(perdure.InvalidInstanceIdError, match=message):
        client.start(waits, None, instance_id=bad_id)
    assert nothing_stored(store)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"when": object()}, "is not JSON-serialisable"),
        ({1, 2}, "is not JSON-serialisable"),
        (float("nan"), "is not JSON-serialisable"),
        ({"n": float("inf")}, "is not JSON-serialisable"),
    ],
)
def test_an_input_that_is_not_json_is_refused_before_anything_is_stored(store, client, value, message):
    """``start`` and ``raise_event`` refuse a payload JSON cannot hold, naming it; no
    instance and no message is stored."""
    with pytest.raises(perdure.SerializationError, match=f"input of orchestration 'waits' {message}"):
        client.start(waits, value)
    assert nothing_stored(store)
    iid = client.start(waits, None)
    with pytest.raises(perdure.SerializationError, match=f"data of event 'go' {message}"):
        client.raise_event(iid, "go", value)
    assert len(store.pending_messages(iid)) == 1  # only the start: no event was queued


def test_an_oversize_payload_is_refused_with_its_size_and_the_limit(store):
    """``max_payload_bytes`` bounds inputs and event data; the error gives both sizes."""
    client = perdure.Client(store, max_payload_bytes=1000)
    with pytest.raises(perdure.SerializationError, match=r"is 2002 bytes of JSON, over the limit of 1000 bytes"):
        client.start(waits, "x" * 2000)
    assert nothing_stored(store)
    iid = client.start(waits, "x" * 900)  # under the limit
    with pytest.raises(perdure.SerializationError, match="data of event 'go' is 5002 bytes"):
        client.raise_event(iid, "go", "y" * 5000)
    assert len(store.pending_messages(iid)) == 1


def test_bad_names_are_refused_at_the_call(store, client):
    """An empty or missing name is refused at once, and nothing is stored (a name no worker
    registers is not an error: it waits for a worker that has it,
    ``tests/scenarios/test_recovery.py``)."""
    with pytest.raises(perdure.RegistrationError, match="must not be empty"):
        client.start("", None)
    with pytest.raises(perdure.RegistrationError, match="expected an orchestration function"):
        client.start(None, None)  # type: ignore[arg-type]
    assert nothing_stored(store)


def test_results_that_are_not_json_fail_only_their_instance(store, client):
    """An orchestration output or activity result JSON cannot hold fails with a clear
    error where it was produced; the other instances carry on."""
    bad_output = client.start(returns_a_set, None)
    bad_result = client.start(bad_activity_result, None)
    fine = client.start(waits, None)
    client.raise_event(fine, "go", 1)
    with perdure.Worker(app, store, poll_interval=0.02):
        states = [client.wait(i, timeout=10) for i in (bad_output, bad_result, fine)]
    assert states[0].status == "FAILED"
    assert "the result of orchestration 'returns_a_set' is not JSON-serialisable" in states[0].failure.message
    assert "result of activity 'unserialisable' is not JSON-serialisable" in states[1].output
    assert (states[2].status, states[2].output) == ("COMPLETED", 1)


def corrupt_history(store_url: str, instance_id: str, sequence: int, text: str) -> None:
    """Overwrite one stored history event behind the store's back."""
    sql = "UPDATE history SET event = {p} WHERE instance_id = {p} AND sequence = {p}"
    if store_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as db, db:
            assert db.execute(sql.format(p="?"), (text, instance_id, sequence)).rowcount == 1
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as db:
        assert db.execute(sql.format(p="%s"), (text, instance_id, sequence)).rowcount == 1


@pytest.mark.parametrize(
    "garbage",
    ['{"v": 1, "kind": "TurnStarted", "timestamp": ', '{"v": 1, "kind": "NoSuchEvent"}'],
    ids=["broken-json", "unknown-kind"],
)
def test_a_corrupted_history_fails_that_instance_and_the_others_carry_on(store_url, garbage):
    """Both instances are locked in the same batch; before the fix the store raised while
    decoding the bad one's history inside ``lock_orchestrations`` and the whole batch was
    stuck behind it (every poll failed)."""
    store = perdure.open_store(store_url)
    client = perdure.Client(store)
    try:
        with perdure.Worker(app, store, poll_interval=0.02):
            for iid in ("bad", "good"):
                client.start(waits, None, instance_id=iid)
            until(lambda: all(client.get(i).waiting_on.events for i in ("bad", "good")), 10, "waiting")
        corrupt_history(store_url, "bad", 1, garbage)
        for iid in ("bad", "good"):
            client.raise_event(iid, "go", iid)
        with perdure.Worker(app, store, poll_interval=0.02, batch_size=8) as worker:
            bad, good = client.wait("bad", timeout=10), client.wait("good", timeout=10)
        assert (good.status, good.output) == ("COMPLETED", "good")
        assert bad.status == "FAILED"
        assert bad.failure.type == "perdure.core.history.EventDecodeError"
        assert "history event 1 of execution 1 cannot be decoded" in bad.failure.message
        assert worker.stats().get("failed_corrupt_history") == 1
        assert not worker.stats().get("turns_engine_error")
        assert store.pending_messages("bad") == []  # the event was recorded, not lost
        assert bad.history_event_count == 2 + 3  # TurnStarted, EventRaised, ExecutionFailed
        with pytest.raises(ValueError, match="the history of instance 'bad' cannot be read"):
            client.get("bad", history=True)
    finally:
        store.close()


def test_a_wait_with_a_negative_timeout_fails_its_orchestration(store, client):
    """Bad arguments inside an orchestration fail that orchestration with the reason."""

    bad = perdure.App()

    @bad.orchestration
    async def negative(ctx: perdure.OrchestrationContext, _: None) -> None:
        await ctx.wait_for_event("x", timeout=timedelta(seconds=-1))

    iid = client.start("negative", None)
    with perdure.Worker(bad, store, poll_interval=0.02):
        state = client.wait(iid, timeout=10)
    assert state.status == "FAILED" and "timeout must be a timedelta >= 0" in state.failure.message
