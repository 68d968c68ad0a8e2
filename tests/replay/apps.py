"""The code of a small shop, as deployed (``app``), and two changes to it: ``compatible``
(running instances replay) and ``breaking`` (some do not). The activities of the changed
apps count their calls: the replay check must never call one."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import perdure

CALLS: Counter[str] = Counter()

app = perdure.App()


@app.activity(name="charge")
def charge(order: dict) -> dict:
    return {"charge_id": f"ch_{order['id']}"}


@app.activity(name="pack")
def pack(item: str) -> str:
    return f"packed {item}"


@app.activity(name="refund_card")
def refund_card(request: dict) -> str:
    return "refunded"


@app.activity(name="notify")
def notify(request: dict) -> str:
    return "notified"


@app.activity(name="award", local=True)
def award(visits: int) -> int:
    return visits * 10


@app.orchestration(name="order_saga")
async def order_saga(ctx: perdure.OrchestrationContext, order: dict) -> dict:
    receipt = await ctx.call_activity("charge", order)
    await ctx.wait_for_event("PaymentConfirmed")
    parts = await ctx.when_all([ctx.call_activity("pack", item) for item in order["items"]])
    return {"receipt": receipt, "parts": parts}


@app.orchestration(name="refund")
async def refund(ctx: perdure.OrchestrationContext, request: dict) -> str:
    await ctx.call_activity("refund_card", request)
    await ctx.create_timer(timedelta(days=1))
    return await ctx.call_activity("notify", request)


@app.orchestration(name="loyalty")
async def loyalty(ctx: perdure.OrchestrationContext, visits: int) -> int:
    await ctx.wait_for_event("Visit")
    points = await ctx.call_activity("award", visits)
    if visits < 5:
        ctx.continue_as_new(visits + 1)
    return points


@app.orchestration(name="gift")
async def gift(ctx: perdure.OrchestrationContext, to: str) -> str:
    await ctx.wait_for_event("Wrapped")
    return f"gift for {to}"


def _counted(name: str):
    def activity(value: object = None) -> object:
        CALLS[name] += 1
        raise RuntimeError(f"activity {name} was called by a replay check")

    return activity


def _changed_app(*, local_award: bool = True) -> perdure.App:
    changed = perdure.App()
    for name in ("charge", "pack", "refund_card", "notify", "reserve", "email"):
        changed.activity(name=name)(_counted(name))
    changed.activity(name="award", local=local_award)(_counted("award"))
    return changed


# -- a compatible change: new activity bodies (above), changed inputs, and a new last step --

compatible = _changed_app()


@compatible.orchestration(name="order_saga")
async def order_saga_compatible(ctx: perdure.OrchestrationContext, order: dict) -> dict:
    receipt = await ctx.call_activity("charge", {**order, "currency": "EUR"})
    await ctx.wait_for_event("PaymentConfirmed")
    parts = await ctx.when_all([ctx.call_activity("pack", item) for item in order["items"]])
    await ctx.call_activity("email", order)  # after the point every running instance reached
    return {"receipt": receipt, "parts": parts}


compatible.orchestration(name="refund")(refund)
compatible.orchestration(name="loyalty")(loyalty)
compatible.orchestration(name="gift")(gift)


# -- a breaking change: a new first step, a removed timer, and gift no longer registered --

breaking = _changed_app()


@breaking.orchestration(name="order_saga")
async def order_saga_breaking(ctx: perdure.OrchestrationContext, order: dict) -> dict:
    await ctx.call_activity("reserve", order)  # a new step before the others
    receipt = await ctx.call_activity("charge", order)
    await ctx.wait_for_event("PaymentConfirmed")
    parts = await ctx.when_all([ctx.call_activity("pack", item) for item in order["items"]])
    return {"receipt": receipt, "parts": parts}


@breaking.orchestration(name="refund")
async def refund_breaking(ctx: perdure.OrchestrationContext, request: dict) -> str:
    await ctx.call_activity("refund_card", request)
    return await ctx.call_activity("notify", request)  # the day's wait removed


breaking.orchestration(name="loyalty")(loyalty)


# -- the same change made safely: the new code as version 2 next to version 1, or behind a patch --


def _with_rest(changed: perdure.App) -> perdure.App:
    for fn in (refund, loyalty, gift):
        changed.orchestration(name=fn.__name__)(fn)
    return changed


versioned = _with_rest(_changed_app())
versioned.orchestration(name="order_saga", version=1)(order_saga)
versioned.orchestration(name="order_saga", version=2)(order_saga_breaking)

only_v2 = _with_rest(_changed_app())
only_v2.orchestration(name="order_saga", version=2)(order_saga_breaking)

patched = _with_rest(_changed_app())


@patched.orchestration(name="order_saga")
async def order_saga_patched(ctx: perdure.OrchestrationContext, order: dict) -> dict:
    if ctx.patched("reserve-first"):
        await ctx.call_activity("reserve", order)
    receipt = await ctx.call_activity("charge", order)
    await ctx.wait_for_event("PaymentConfirmed")
    parts = await ctx.when_all([ctx.call_activity("pack", item) for item in order["items"]])
    return {"receipt": receipt, "parts": parts}
