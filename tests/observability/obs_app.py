"""The orchestrations the observability tests run: retries, a failure, a timer, a local
activity and a child."""

from __future__ import annotations

from datetime import timedelta

import perdure

app = perdure.App()

RETRY = perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(milliseconds=10), backoff=1.0)


@app.activity
def flaky(_: object) -> str:
    """Fails its first attempt, succeeds on the second."""
    if perdure.activity_info().attempt < 2:
        raise ConnectionError("transient")
    return "ok"


@app.activity
def broken(_: object) -> None:
    raise ValueError("always broken")


@app.activity(local=True)
def stamp(value: str) -> str:
    return f"stamped {value}"


@app.activity
def greet(name: str) -> str:
    return f"hello {name}"


@app.orchestration
async def child(ctx: perdure.OrchestrationContext, name: str) -> str:
    return await ctx.call_activity(greet, name)


@app.orchestration
async def journey(ctx: perdure.OrchestrationContext, _: object) -> list:
    """A retried activity, a local activity, a timer, a child."""
    first = await ctx.call_activity(flaky, None, retry=RETRY)
    stamped = await ctx.call_activity(stamp, first)
    await ctx.create_timer(timedelta(milliseconds=50))
    greeting = await ctx.call_sub_orchestration(child, "ada")
    return [first, stamped, greeting]


@app.orchestration
async def doomed(ctx: perdure.OrchestrationContext, _: object) -> None:
    await ctx.call_activity(broken, None)


#: The tracer the activity ``user_work`` instruments itself with (set by the tests).
user_tracer = None


@app.activity
def traced_greet(name: str) -> str:
    """An activity with its own instrumentation, as a user's HTTP client would have."""
    if user_tracer is None:
        return f"hello {name}"
    with user_tracer.start_as_current_span("user work"):
        return f"hello {name}"


@app.orchestration
async def traced_child(ctx: perdure.OrchestrationContext, name: str) -> str:
    return await ctx.call_activity(traced_greet, name)


@app.orchestration
async def traced(ctx: perdure.OrchestrationContext, _: object) -> list:
    """A retried activity, a timer, a wait (where a test restarts the worker), a child."""
    first = await ctx.call_activity(flaky, None, retry=RETRY)
    await ctx.create_timer(timedelta(milliseconds=20))
    go = await ctx.wait_for_event("go")
    greeting = await ctx.call_sub_orchestration(traced_child, go)
    return [first, greeting]
