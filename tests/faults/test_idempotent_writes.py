"""Client writes whose commit outcome was unknown are retried and apply once (issue 16,
item 9): every write carries a request id the store records with it (a start's random
instance id serves as its own), so the retry of a write that had in fact committed changes
nothing.

A :class:`~perdure.testing.FaultyStore` raises :class:`~perdure.errors.StoreUnavailableError`
just *after* the commit (the connection broke before the reply came), once: the client
tries again with the same request id.
"""

from __future__ import annotations

import contextlib

import pytest

import perdure
from perdure.errors import StoreUnavailableError
from perdure.testing import Fault, FaultyStore
from tests.scenarios.helpers import idle

app = perdure.App()


@app.orchestration
async def waits(ctx: perdure.OrchestrationContext, _: None) -> list[object]:
    return [await ctx.wait_for_event("go"), await ctx.wait_for_event("go")]


def lost_reply(point: str) -> None:
    raise StoreUnavailableError(f"{point}: the connection was lost during COMMIT, the outcome is unknown")


@pytest.mark.parametrize("verb", ["raise_event", "terminate", "suspend", "resume"])
def test_an_operator_message_retried_after_an_unknown_outcome_is_queued_once(store, verb: str) -> None:
    """Pinned by the store's request ids (``first_request``): without them the retry queues
    a second message (checked)."""
    iid = perdure.Client(store).start(waits, None)
    faulty = FaultyStore(store, [Fault("enqueue_messages:after", lost_reply)])
    client = perdure.Client(faulty)  # type: ignore[arg-type]
    args = ("go", 1) if verb == "raise_event" else ("why",)
    getattr(client, verb)(iid, *args)
    assert faulty.hits["enqueue_messages:before"] == 2  # it was tried again
    assert len(store.pending_messages(iid)) == 2  # the start and one message


def test_a_start_retried_after_an_unknown_outcome_creates_the_instance_once(store) -> None:
    faulty = FaultyStore(store, [Fault("create_instances:after", lost_reply)])
    client = perdure.Client(faulty)  # type: ignore[arg-type]
    iid = client.start(waits, None, instance_id="once")
    assert iid == "once" and faulty.hits["create_instances:before"] == 2
    assert [m.event.name for m in store.pending_messages("once")] == ["waits"]
    ids = client.start_many(waits, [1, 2])  # the same for a batch
    assert len(client.list(name="waits").items) == 3 and all(store.get_instance(i) for i in ids)


@pytest.mark.parametrize("path", ["queued", "handed", "eager"])
def test_a_random_id_start_retried_after_an_unknown_outcome_creates_the_instance_once(store, path: str) -> None:
    """A random id is the start's own request id: no request is recorded with it, and the
    retry, finding the id taken, returns it. Without that rule the retry raises
    ``InstanceExistsError`` for the caller's own start (checked). The first try is queued
    (no worker), handed to the idle worker of the process, or eager (both
    ``create_and_run``); the retry is a queued start."""
    point = "create_instances:after" if path == "queued" else "create_and_run:after"
    faulty = FaultyStore(store, [Fault(point, lost_reply)])
    client = perdure.Client(faulty)  # type: ignore[arg-type]
    with contextlib.ExitStack() as running:
        if path != "queued":
            idle(running.enter_context(perdure.Worker(app, faulty)))  # type: ignore[arg-type]
        iid = client.start(waits, None, eager=path == "eager")
    assert faulty.hits["create_and_run:before"] == (0 if path == "queued" else 1)
    assert faulty.hits["create_instances:before"] == (2 if path == "queued" else 1)  # with the retry
    [only] = client.list(name="waits").items
    assert only.instance_id == iid and only.status in ("PENDING", "RUNNING")


def test_a_callers_own_request_id_makes_its_own_retries_safe(store) -> None:
    client = perdure.Client(store)
    iid = client.start(waits, None, request_id="start-1")
    assert client.start(waits, None, instance_id=iid, request_id="start-1") == iid  # no InstanceExistsError
    for _ in range(3):
        client.raise_event(iid, "go", "once", request_id="order-7-paid")
    assert len(store.pending_messages(iid)) == 2
    with pytest.raises(perdure.InvalidInputError, match="request_id must be a non-empty string"):
        client.raise_event(iid, "go", request_id="")


def test_a_store_that_stays_unavailable_still_fails_the_call(store) -> None:
    faulty = FaultyStore(store, [Fault("enqueue_messages:before", lost_reply, times=None)])
    iid = perdure.Client(store).start(waits, None)
    with pytest.raises(StoreUnavailableError):
        perdure.Client(faulty).raise_event(iid, "go")  # type: ignore[arg-type]
    assert faulty.hits["enqueue_messages:before"] == 4  # the first try and three more
