"""The orchestrations the web tests serve: an order saga that fans out, retries a flaky
payment, waits for an approval and starts a shipping child, plus a few smaller shapes."""

from __future__ import annotations

import time
from datetime import timedelta

import perdure

app = perdure.App()


@app.activity
def reserve(item: str) -> str:
    time.sleep(0.03)
    return f"reserved {item}"


@app.activity
def charge(order: dict) -> dict:
    time.sleep(0.02)
    if perdure.activity_info().attempt < 2:  # the first attempt of every order fails
        raise ConnectionError("payments-api.internal:443 connection refused")
    return {"charge_id": f"ch_{order['id']}", "amount": order["total"]}


@app.activity
def label(order: dict) -> str:
    time.sleep(0.02)
    return f"label-{order['id']}"


@app.activity
def refuse(_: object) -> None:
    raise ValueError("card declined")


@app.orchestration
async def ship(ctx: perdure.OrchestrationContext, order: dict) -> str:
    return await ctx.call_activity(label, order)


@app.orchestration
async def order_saga(ctx: perdure.OrchestrationContext, order: dict) -> dict:
    ctx.set_custom_status({"stage": "reserving"})
    parts = await ctx.when_all([ctx.call_activity(reserve, i) for i in order["items"]])
    ctx.set_custom_status({"stage": "charging"})
    receipt = await ctx.call_activity(
        charge, order, retry=perdure.RetryPolicy(max_attempts=4, first_delay=timedelta(seconds=0.2))
    )
    ctx.set_custom_status({"stage": "awaiting approval"})
    approval = await ctx.wait_for_event("Approved", timeout=timedelta(hours=1))
    ctx.set_custom_status({"stage": "shipping"})
    tracking = await ctx.call_sub_orchestration(ship, order)
    ctx.set_custom_status({"stage": "done"})
    return {"parts": parts, "receipt": receipt, "approval": approval, "tracking": tracking}


@app.orchestration
async def declined(ctx: perdure.OrchestrationContext, _: object) -> None:
    await ctx.call_activity(refuse, None)


@app.orchestration
async def nightly(ctx: perdure.OrchestrationContext, _: object) -> str:
    await ctx.create_timer(timedelta(hours=6))
    return "ran"
