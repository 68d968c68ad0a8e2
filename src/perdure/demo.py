"""``perdure demo``: an order workflow that shows what the engine does, live.

One order runs through a fan-out/fan-in reservation, a flaky payment activity that succeeds
on its third attempt (durable retry timers), a manager approval raised as an external event
by the demo after a delay, a shipping sub-orchestration with a durable timer, and custom
status updates; a loyalty-points orchestration meanwhile loops with continue-as-new,
calling a local activity.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from perdure.client import Client, InstanceState
from perdure.core.context import OrchestrationContext
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ContinuedAsNew,
    EventRaised,
    HistoryEvent,
    SubOrchestrationCompleted,
    TimerFired,
)
from perdure.core.registry import App
from perdure.core.retry import RetryPolicy
from perdure.errors import TaskTimeoutError
from perdure.runtime.activity_info import activity_info
from perdure.runtime.worker import Worker
from perdure.store.open import open_store

app = App()


@app.activity
def reserve_item(item: dict) -> dict:
    """Reserve one line of the order in the warehouse."""
    time.sleep(0.05)
    return {"sku": item["sku"], "qty": item["qty"], "bin": f"B-{sum(map(ord, item['sku'])) % 90 + 10}"}


@app.activity
def charge_card(order: dict) -> dict:
    """Charge the customer; the gateway times out on the first two attempts."""
    attempt = activity_info().attempt
    if attempt < 3:
        raise ConnectionError(f"payment gateway timed out (attempt {attempt})")
    return {"charge_id": f"ch_{order['id']}_{attempt}", "amount": order["total"]}


@app.activity
def print_label(order: dict) -> str:
    """Print the shipping label."""
    return f"TRK-{order['id']}-{len(order['items'])}"


@app.activity(local=True)
def award_points(state: dict) -> int:
    """Award loyalty points for one month: a short computation, so a local activity, run
    inside the turn that calls it and committed with it."""
    return state["points"] + 10 * state["month"]


@app.orchestration
async def shipping(ctx: OrchestrationContext, order: dict) -> dict:
    """Sub-orchestration: print the label, then wait (durably) for the carrier pickup."""
    tracking = await ctx.call_activity(print_label, order)
    await ctx.create_timer(timedelta(milliseconds=400))
    return {"tracking": tracking, "picked_up_at": ctx.now().isoformat(timespec="milliseconds")}


@app.orchestration
async def order_workflow(ctx: OrchestrationContext, order: dict) -> dict:
    """Reserve every item in parallel, charge with retries, wait for approval, ship."""
    ctx.set_custom_status({"stage": "reserving", "items": len(order["items"])})
    reservations = await ctx.when_all([ctx.call_activity(reserve_item, item) for item in order["items"]])
    ctx.set_custom_status({"stage": "charging"})
    charge = await ctx.call_activity(
        charge_card, order, retry=RetryPolicy(max_attempts=5, first_delay=timedelta(milliseconds=150))
    )
    ctx.set_custom_status({"stage": "awaiting approval"})
    try:
        approval = await ctx.wait_for_event("ManagerApproval", timeout=timedelta(seconds=5))
    except TaskTimeoutError:
        approval = {"approved": False, "by": "timeout"}
    if not approval.get("approved"):
        ctx.set_custom_status({"stage": "rejected"})
        return {"order": order["id"], "status": "rejected"}
    ctx.set_custom_status({"stage": "shipping"})
    shipment = await ctx.call_sub_orchestration(shipping, order)
    ctx.set_custom_status({"stage": "done"})
    return {
        "order": order["id"],
        "bins": [r["bin"] for r in reservations],
        "charge": charge["charge_id"],
        "approved_by": approval["by"],
        "tracking": shipment["tracking"],
    }


@app.orchestration
async def loyalty_points(ctx: OrchestrationContext, state: dict) -> dict:
    """An eternal-style loop: one month per execution, continue-as-new keeps history small."""
    points = await ctx.call_activity(award_points, state)
    ctx.set_custom_status({"month": state["month"], "points": points})
    await ctx.create_timer(timedelta(milliseconds=200))
    if state["month"] < state["months"]:
        ctx.continue_as_new({**state, "month": state["month"] + 1, "points": points})
    return {"months": state["month"], "points": points}


ORDER = {
    "id": 1001,
    "total": 129.90,
    "items": [{"sku": "kettle", "qty": 1}, {"sku": "mug", "qty": 4}, {"sku": "tea", "qty": 2}],
}


def run_demo(store_url: str | None, echo: Callable[[str], None] = print) -> int:
    """Run the demo on ``store_url`` (a temporary SQLite file if None); return an exit code."""
    tmp = None
    if store_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="perdure-demo-")
        store_url = f"sqlite:///{Path(tmp.name) / 'demo.db'}"
    store = open_store(store_url)
    try:
        return _run(store, store_url, echo)
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()


def _run(store: Any, store_url: str, echo: Callable[[str], None]) -> int:
    client = Client(store)
    echo(f"perdure demo — store {store_url}")
    started = time.monotonic()
    with Worker(app, store, poll_interval=0.2):
        order_id = client.start(order_workflow, ORDER, instance_id=f"order-{ORDER['id']}", replace_terminal=True)
        loop_id = client.start(
            loyalty_points, {"month": 1, "months": 3, "points": 0}, instance_id="loyalty-42", replace_terminal=True
        )
        echo(f"started {order_id} (order_workflow) and {loop_id} (loyalty_points, continue-as-new)\n")

        def approve_later() -> None:
            time.sleep(1.0)
            echo(f"{time.monotonic() - started:6.2f}s  >> raising event ManagerApproval to {order_id}")
            client.raise_event(order_id, "ManagerApproval", {"approved": True, "by": "dana"})

        threading.Thread(target=approve_later, daemon=True).start()
        last: dict[str, str] = {}
        seen: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = [client.get(order_id, history=True), client.get(loop_id, history=True)]
            for state in states:
                if state is None:
                    continue
                elapsed = f"{time.monotonic() - started:6.2f}s"
                key = (state.instance_id, state.execution_id)
                for note in _what_ran(state.history or [], seen.get(key, 0)):
                    echo(f"{elapsed}  {state.instance_id:<11} {note}")
                seen[key] = len(state.history or [])
                line = _progress_line(state)
                if last.get(state.instance_id) != line:
                    last[state.instance_id] = line
                    echo(f"{elapsed}  {line}")
            if all(s is not None and s.is_terminal for s in states):
                break
            time.sleep(0.05)
        final = client.wait(order_id, timeout=5)
        loop_final = client.wait(loop_id, timeout=5)
    echo("")
    for state in (final, loop_final):
        echo(f"{state.instance_id}: {state.status.value} in execution {state.execution_id}")
        echo(f"  output: {state.output}")
    history = client.get(order_id, history=True)
    assert history is not None and history.history is not None
    kinds = Counter(type(e).__name__ for e in history.history)
    echo(f"\nhistory of {order_id}: {len(history.history)} events")
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        echo(f"  {count:3d} × {kind}")
    children = client.list(parent_instance_id=order_id).items
    for child in children:
        echo(f"  child {child.instance_id} ({child.name}): {child.status.value} -> {child.output}")
    echo(f"\ndone in {time.monotonic() - started:.1f}s")
    ok = final.status.value == "COMPLETED" and loop_final.status.value == "COMPLETED"
    return 0 if ok else 1


def _what_ran(history: list[HistoryEvent], start: int) -> list[str]:
    """One line per notable event from ``history[start:]``: what ran and what came in."""
    names = {e.task_id: e.name for e in history if isinstance(e, ActivityScheduled)}
    notes = []
    for event in history[start:]:
        match event:
            case ActivityCompleted(task_id=task_id, result=result):
                notes.append(f"  ran {names.get(task_id, '?')} -> {result}")
            case ActivityFailed(task_id=task_id, failure=failure):
                notes.append(f"  ran {names.get(task_id, '?')} -> failed: {failure.message}")
            case TimerFired():
                notes.append("  timer fired")
            case EventRaised(name=name, input=data):
                notes.append(f"  received event {name} {data}")
            case SubOrchestrationCompleted(result=result):
                notes.append(f"  child completed -> {result}")
            case ContinuedAsNew(input=data):
                notes.append(f"  continued as new with {data}")
    return notes


def _progress_line(state: InstanceState) -> str:
    waits = state.waiting_on
    parts = []
    if waits.activities:
        names = Counter(f"{a.name}#{a.attempt}" if a.attempt > 1 else a.name for a in waits.activities)
        parts.append("activities " + ", ".join(f"{n}×{c}" if c > 1 else n for n, c in names.items()))
    if waits.timers:
        parts.append(
            "timer" + ("s" if len(waits.timers) > 1 else "") + " (" + ", ".join(t.purpose for t in waits.timers) + ")"
        )
    if waits.children:
        parts.append("child " + ", ".join(c.instance_id for c in waits.children))
    if waits.events:
        parts.append("event " + ", ".join(e.name for e in waits.events))
    waiting = f" waiting on {'; '.join(parts)}" if parts and not state.is_terminal else ""
    custom = f" {state.custom_status}" if state.custom_status is not None else ""
    return f"{state.instance_id:<11} exec {state.execution_id} {state.status.value:<9}{custom}{waiting}"
