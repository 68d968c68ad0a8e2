"""The client's operator calls: app-checked starts, id-prefix listing, histories of every
execution, counts and bulk operations over filters, the termination reason; and the
payload limit on what workers store (activity results, orchestration outputs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import perdure
from perdure import InstanceFilter, OrchestrationStatus

app = perdure.App()


@app.activity
def add(n: int) -> int:
    return n + 1


@app.activity
def blob(size: int) -> str:
    return "x" * size


@app.orchestration
async def step(ctx: perdure.OrchestrationContext, n: int) -> int:
    n = await ctx.call_activity(add, n)
    if n < 3:
        ctx.continue_as_new(n)
    return n


@app.orchestration
async def waits(ctx: perdure.OrchestrationContext, _: object) -> object:
    return await ctx.wait_for_event("go")


@app.orchestration
async def big_result(ctx: perdure.OrchestrationContext, size: int) -> int:
    try:
        await ctx.call_activity(blob, size)
    except perdure.ActivityError as exc:
        return {"error_type": exc.error_type, "message": exc.error_message}
    return "small enough"


@app.orchestration
async def big_output(ctx: perdure.OrchestrationContext, size: int) -> str:
    return "y" * size


def test_a_client_with_an_app_refuses_unregistered_names_at_the_call(store):
    client = perdure.Client(store, app=app)
    with pytest.raises(perdure.RegistrationError) as err:
        client.start("no_such_flow", None)
    assert str(err.value) == (
        "orchestration 'no_such_flow' is not registered in the app (registered: big_output, big_result, step, waits)"
    )
    with pytest.raises(perdure.InvalidInputError, match="'nope' is not registered"):
        client.start_many("nope", [1, 2])
    assert client.list().items == []
    assert perdure.Client(store).start("no_such_flow", None)  # without an app: not checked
    with pytest.raises(perdure.InvalidInputError, match=r"app must be a perdure\.App"):
        perdure.Client(store, app="shop:app")


def test_list_by_id_prefix_and_history_of_each_execution(store):
    client = perdure.Client(store, app=app)
    with perdure.Worker(app, store, poll_interval=0.05):
        client.wait(client.start(step, 0, instance_id="loop-1"), timeout=20)
    client.start(waits, None, instance_id="other")
    assert [s.instance_id for s in client.list(prefix="loop-").items] == ["loop-1"]
    assert [s.instance_id for s in client.list(prefix="l").items] == ["loop-1"]
    assert client.get("loop-1").execution_id == 3
    first = client.history("loop-1", execution_id=1)
    assert type(first[-1]).__name__ == "ContinuedAsNew" and first[-1].input == 1
    assert type(client.history("loop-1")[-1]).__name__ == "ExecutionCompleted"
    with pytest.raises(perdure.InvalidInputError, match="has executions 1 to 3, not 4"):
        client.history("loop-1", execution_id=4)
    with pytest.raises(perdure.InstanceNotFoundError):
        client.history("nope")


def test_count_and_bulk_operations_page_through_the_matches(store, monkeypatch):
    monkeypatch.setattr(perdure.client, "_BULK_PAGE", 2)  # several pages with few instances
    client = perdure.Client(store, app=app)
    client.start_many(waits, [None] * 5, instance_ids=[f"batch-{i}" for i in range(5)])
    client.start(waits, None, instance_id="solo")
    batch = InstanceFilter(prefix="batch-")
    assert client.count(batch) == 5 and client.count() == 6
    assert client.count(InstanceFilter(status="COMPLETED")) == 0
    assert client.count(InstanceFilter(created_after=datetime.now(UTC) + timedelta(hours=1))) == 0
    assert client.suspend_where(batch, dry_run=True) == 5
    assert all(not store.pending_messages(f"batch-{i}")[1:] for i in range(5))  # the dry run sent nothing
    with perdure.Worker(app, store, poll_interval=0.05):
        assert client.terminate_where(batch, reason="load test over") == 5
        states = [client.wait(f"batch-{i}", timeout=20) for i in range(5)]
        assert {s.status for s in states} == {OrchestrationStatus.TERMINATED}
        assert {s.termination_reason for s in states} == {"load test over"}
        assert {s.output for s in states} == {None}
        assert client.terminate_where(batch) == 0  # nothing live is left to terminate
        assert client.get("solo").status is not OrchestrationStatus.TERMINATED
    assert client.purge_where(batch, dry_run=True) == 5
    assert client.purge_where(batch) == 5
    assert [s.instance_id for s in client.list().items] == ["solo"]


def test_suspend_where_and_resume_where_act_only_on_the_statuses_they_apply_to(store):
    client = perdure.Client(store, app=app)
    client.start_many(waits, [None] * 3, instance_ids=["s-0", "s-1", "s-2"])
    with perdure.Worker(app, store, poll_interval=0.05):
        assert client.resume_where(InstanceFilter(prefix="s-")) == 0  # none is suspended
        assert client.suspend_where(InstanceFilter(prefix="s-"), reason="maintenance") == 3
        _until(lambda: client.count(InstanceFilter(status="SUSPENDED")) == 3)
        assert client.resume_where(InstanceFilter(prefix="s-", status=["SUSPENDED", "RUNNING"])) == 3
        _until(lambda: client.count(InstanceFilter(status="RUNNING")) == 3)


def test_filters_are_checked_when_made():
    with pytest.raises(perdure.InvalidInputError, match="unknown status 'DONE'"):
        InstanceFilter(status="DONE")
    with pytest.raises(perdure.InvalidInputError, match="must be timezone-aware"):
        InstanceFilter(created_before=datetime(2026, 1, 1))
    with pytest.raises(perdure.InvalidInputError, match="prefix must be a non-empty string"):
        InstanceFilter(prefix="")
    assert InstanceFilter(status="running", name="x").describe() == "status RUNNING, name x"


def test_a_terminate_reason_is_the_state_s_termination_reason_also_for_children(store):
    client = perdure.Client(store, app=app)
    client.start(waits, None, instance_id="t-1")
    client.start(waits, None, instance_id="t-2")
    with perdure.Worker(app, store, poll_interval=0.05):
        client.terminate("t-1", reason="duplicate order")
        client.terminate("t-2")
        one, two = client.wait("t-1", timeout=20), client.wait("t-2", timeout=20)
    assert (one.termination_reason, one.output, one.to_dict()["termination_reason"]) == (
        "duplicate order",
        None,
        "duplicate order",
    )
    assert two.termination_reason is None


def test_activity_results_and_orchestration_outputs_over_the_worker_s_limit_fail(store):
    client = perdure.Client(store, app=app)
    with perdure.Worker(app, store, poll_interval=0.05, max_payload_bytes=1000):
        small = client.wait(client.start(big_result, 10), timeout=20)
        large = client.wait(client.start(big_result, 5000), timeout=20)
        output = client.wait(client.start(big_output, 5000), timeout=20)
    assert small.output == "small enough"
    assert large.output == {
        "error_type": "perdure.errors.SerializationError",
        "message": "result of activity 'blob' is 5002 bytes of JSON, over the limit of 1000 bytes",
    }
    assert output.status is OrchestrationStatus.FAILED
    assert output.failure.type == "perdure.errors.SerializationError"
    assert output.failure.message == (
        "the result of orchestration 'big_output' is 5002 bytes of JSON, over the limit of 1000 bytes"
    )
    with pytest.raises(perdure.InvalidInputError, match="max_payload_bytes must be a positive integer"):
        perdure.Worker(app, store, max_payload_bytes=0)


def test_the_async_client_has_the_same_calls(store):
    import asyncio

    async def main() -> tuple[int, list[object], int]:
        client = perdure.AsyncClient(store, app=app)
        await client.start(waits, None, instance_id="a-1")
        counted = await client.count(InstanceFilter(prefix="a-"))
        history = await client.history("a-1")
        ended = await client.terminate_where(InstanceFilter(prefix="a-"), "done")
        return counted, history, ended

    counted, history, ended = asyncio.run(main())
    assert (counted, history, ended) == (1, [], 1)


def _until(condition, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)
