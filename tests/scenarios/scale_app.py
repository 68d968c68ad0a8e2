"""The app of the scale-out tests, run by ``perdure worker`` processes."""

from __future__ import annotations

from datetime import timedelta

import perdure

app = perdure.App()


@app.activity
def square(x: int) -> int:
    return x * x


@app.orchestration
async def child(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(square, x)


@app.orchestration
async def job(ctx: perdure.OrchestrationContext, n: int) -> int:
    a = await ctx.call_activity(square, n)
    await ctx.create_timer(timedelta(milliseconds=50))
    b = await ctx.call_sub_orchestration(child, n + 1)
    c = await ctx.call_activity(square, n + 2)
    return a + b + c


def expected(n: int) -> int:
    return n * n + (n + 1) ** 2 + (n + 2) ** 2
