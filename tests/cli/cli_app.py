"""The App the CLI tests run workers for (``--app tests.cli.cli_app:app`` from the
repository root)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import perdure

app = perdure.App()
log = logging.getLogger("cli_app")


@app.activity
def add(n: int) -> int:
    log.info("adding one to %d", n)
    return n + 1


@app.activity
def greet(name: str) -> str:
    return f"hello {name}"


@app.activity
def flaky(n: int) -> int:
    if perdure.activity_info().attempt < 2:
        raise ConnectionError("gateway timed out")
    return n


@app.activity
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.activity
def blob(size: int) -> str:
    return "x" * size


@app.orchestration
async def quick(ctx: perdure.OrchestrationContext, n: int) -> int:
    ctx.logger.info("quick got %d", n)
    return await ctx.call_activity(add, n)


@app.orchestration
async def hello(ctx: perdure.OrchestrationContext, name: str) -> str:
    await ctx.wait_for_event("go")
    return await ctx.call_activity(greet, name)


@app.orchestration
async def boom(ctx: perdure.OrchestrationContext, _: object) -> None:
    raise ValueError("no stock left")


@app.orchestration
async def forever(ctx: perdure.OrchestrationContext, _: object) -> None:
    await ctx.wait_for_event("never")


@app.orchestration
async def retrying(ctx: perdure.OrchestrationContext, n: int) -> int:
    policy = perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(milliseconds=100))
    return await ctx.call_activity(flaky, n, retry=policy)


@app.orchestration
async def sleepy(ctx: perdure.OrchestrationContext, seconds: float) -> float:
    return await ctx.call_activity(nap, seconds)


@app.orchestration
async def looping(ctx: perdure.OrchestrationContext, n: int) -> int:
    n = await ctx.call_activity(add, n)
    if n < 3:
        ctx.continue_as_new(n)
    return n


@app.orchestration
async def big_result(ctx: perdure.OrchestrationContext, size: int) -> str:
    return await ctx.call_activity(blob, size)
