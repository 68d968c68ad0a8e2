"""The soak's workload: one orchestration that uses every feature, its expected output.

``soak_flow`` runs, in each of its executions: an activity, a local activity, a fan-out of
activities, a timer, a wait for the event ``go`` that the driver raises, sub-orchestrations,
an activity and a local activity that fail their first attempts and succeed on a retry;
then it continues as new, or ends. How many children and executions depends on ``n``, so
the instances of a run differ. :func:`expected_output` computes the output from the input
alone: it is what every instance must end with, however often its workers were killed.

Worker processes import it (``perdure worker --app bench.soak_app:app``). With
``$PERDURE_SOAK_LOG`` set, every activity execution appends a line to that file, so the soak
can count executions (at-least-once: a killed worker's activities run again).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import perdure

app = perdure.App()

LOG_ENV = "PERDURE_SOAK_LOG"
RETRY = perdure.RetryPolicy(max_attempts=4, first_delay=timedelta(milliseconds=30), backoff=1.5)
FAILING_ATTEMPTS = 2  # ``flaky`` fails attempts 1 and 2, succeeds on the third
FAN_OUT = 3


def rounds(n: int) -> int:
    """How many executions instance ``n`` runs (1 to 4: up to three continue-as-new)."""
    return 1 + n % 4


def children(n: int) -> int:
    """How many sub-orchestrations each execution of instance ``n`` starts (0 to 2)."""
    return n % 3


def event_data(n: int, k: int) -> dict[str, int]:
    """The payload of the ``k``-th ``go`` event the driver raises to instance ``n``."""
    return {"n": n, "k": k}


def _log(name: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:  # one short append: atomic
            log.write(f"{name}\n")


@app.activity
def work(x: int) -> int:
    """An ordinary activity; some take a few milliseconds, so kills land inside them."""
    _log("work")
    time.sleep(0.002 * (x % 5))
    return 3 * x + 1


@app.activity(local=True)
def local_step(x: int) -> int:
    """A local activity: runs inside the turn that calls it."""
    _log("local_step")
    return x + 7


@app.activity
def flaky(x: int) -> int:
    """Fails its first attempts (whichever worker runs them), then succeeds."""
    _log("flaky")
    attempt = perdure.activity_info().attempt
    if attempt <= FAILING_ATTEMPTS:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return 5 * x


@app.activity(local=True)
def flaky_local(x: int) -> int:
    """A local activity that fails its first attempt."""
    _log("flaky_local")
    if perdure.activity_info().attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return x - 2


@app.orchestration
async def leaf(ctx: perdure.OrchestrationContext, x: int) -> int:
    """A child: an activity, then a local activity on its result."""
    a = await ctx.call_activity(work, x)
    return a + await ctx.call_activity(local_step, a)


@app.orchestration
async def soak_flow(ctx: perdure.OrchestrationContext, state: dict[str, Any]) -> dict[str, Any]:
    """One execution of the mixed workload; continues as new until ``rounds(n)`` ran."""
    n, k = state["n"], state["k"]
    x = n + 10 * k
    a = await ctx.call_activity(work, x)
    b = await ctx.call_activity(local_step, a)
    fan = await ctx.when_all([ctx.call_activity(work, x + i) for i in range(FAN_OUT)])
    await ctx.create_timer(timedelta(milliseconds=10 * (1 + n % 5)))
    event = await ctx.wait_for_event("go")
    subs = await ctx.when_all([ctx.call_sub_orchestration(leaf, x + i) for i in range(children(n))])
    retried = await ctx.call_activity(flaky, x, retry=RETRY)
    retried_local = await ctx.call_activity(flaky_local, x, retry=RETRY)
    step = {"a": a, "b": b, "fan": fan, "event": event, "children": subs, "retried": [retried, retried_local]}
    steps = [*state["steps"], step]
    if k + 1 < rounds(n):
        ctx.continue_as_new({"n": n, "k": k + 1, "steps": steps})
    return {"n": n, "steps": steps}


def first_input(n: int) -> dict[str, Any]:
    """The input the driver starts instance ``n`` with."""
    return {"n": n, "k": 0, "steps": []}


def expected_output(n: int) -> dict[str, Any]:
    """What instance ``n`` ends with: ``soak_flow`` computed without the engine."""

    def _work(x: int) -> int:
        return 3 * x + 1

    def _leaf(x: int) -> int:
        return _work(x) + _work(x) + 7

    steps = []
    for k in range(rounds(n)):
        x = n + 10 * k
        a = _work(x)
        steps.append(
            {
                "a": a,
                "b": a + 7,
                "fan": [_work(x + i) for i in range(FAN_OUT)],
                "event": event_data(n, k),
                "children": [_leaf(x + i) for i in range(children(n))],
                "retried": [5 * x, x - 2],
            }
        )
    return {"n": n, "steps": steps}
