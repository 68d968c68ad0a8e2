"""The orchestrations whose histories are stored in ``golden/``.

Never change what these functions do: their stored histories must keep replaying. Add a new
orchestration (and a new golden file) instead.
"""

from __future__ import annotations

from datetime import timedelta

from perdure.core.registry import App
from perdure.core.retry import RetryPolicy
from perdure.errors import TaskTimeoutError

app = App()


@app.orchestration
async def order_saga(ctx, order):
    ctx.set_custom_status({"stage": "charging"})
    receipt = await ctx.call_activity(
        "charge", order, retry=RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=5))
    )
    ctx.set_custom_status({"stage": "awaiting payment"})
    try:
        confirmation = await ctx.wait_for_event("PaymentConfirmed", timeout=timedelta(hours=1))
    except TaskTimeoutError:
        confirmation = None
    parts = await ctx.when_all([ctx.call_activity("pack", i) for i in range(3)])
    shipment = await ctx.call_sub_orchestration("ship", {"order": order["id"]})
    ctx.set_custom_status({"stage": "shipped"})
    return {
        "receipt": receipt,
        "confirmation": confirmation,
        "parts": parts,
        "shipment": shipment,
        "ref": str(ctx.new_uuid()),
    }


@app.orchestration
async def approval(ctx, _):
    cancel = ctx.wait_for_event("Cancel")
    try:
        decision = await ctx.wait_for_event("Approval", timeout=timedelta(minutes=10))
    except TaskTimeoutError:
        decision = "timed out"
    winner = await ctx.when_any([cancel, ctx.create_timer(timedelta(days=1))])
    return {"decision": decision, "cancelled": winner is cancel}


@app.orchestration
async def batch(ctx, state):
    item = await ctx.wait_for_event("Item")
    total = state["total"] + await ctx.call_activity("price", item)
    ctx.continue_as_new({"total": total})


@app.orchestration
async def fragile(ctx, _):
    await ctx.call_activity("step", 1)
    await ctx.call_activity("step", 2)
    return "unreachable in the golden history"


@app.orchestration
async def supervised(ctx, _):
    children = [ctx.call_sub_orchestration("worker", i) for i in range(2)]
    return await ctx.when_all(children)
