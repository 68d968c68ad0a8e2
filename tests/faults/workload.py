"""The mixed workload of the fault tests: sequences, fan-out, a timer, an event, a child,
retries and continue-as-new. Importable by a worker subprocess
(``--app tests.faults.workload:app``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import perdure

app = perdure.App()

RETRY = perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(milliseconds=20))


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.activity
def flaky(x: int) -> int:
    """Fails its first attempt (every delivery of it), succeeds on the retry."""
    if perdure.activity_info().attempt == 1:
        raise RuntimeError("transient failure")
    return x + 100


@app.orchestration
async def child(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, x)


@app.orchestration
async def mixed(ctx: perdure.OrchestrationContext, n: int) -> dict[str, Any]:
    a = await ctx.call_activity(double, n)
    b = await ctx.call_activity(double, a)
    fan = await ctx.when_all([ctx.call_activity(double, n + i) for i in range(3)])
    await ctx.create_timer(timedelta(milliseconds=30))
    event = await ctx.wait_for_event("go")
    sub = await ctx.call_sub_orchestration(child, n)
    retried = await ctx.call_activity(flaky, n, retry=RETRY)
    return {"seq": [a, b], "fan": fan, "event": event, "child": sub, "retry": retried}


@app.orchestration
async def looper(ctx: perdure.OrchestrationContext, state: dict[str, int]) -> int:
    total = state["total"] + await ctx.call_activity(double, state["i"])
    if state["i"] < 2:
        ctx.continue_as_new({"i": state["i"] + 1, "total": total})
    return total


def start_all(client: perdure.Client) -> list[str]:
    """Start the workload's instances (and raise the event they wait for); their ids."""
    ids = [
        client.start(mixed, 1, instance_id="mixed-1"),
        client.start(mixed, 2, instance_id="mixed-2"),
        client.start(looper, {"i": 0, "total": 0}, instance_id="looper-1"),
    ]
    client.raise_event("mixed-1", "go", "one")
    client.raise_event("mixed-2", "go", "two")
    return ids


EXPECTED = {
    "mixed-1": {"seq": [2, 4], "fan": [2, 4, 6], "event": "one", "child": 2, "retry": 101},
    "mixed-2": {"seq": [4, 8], "fan": [4, 6, 8], "event": "two", "child": 4, "retry": 102},
    "looper-1": 6,
}
