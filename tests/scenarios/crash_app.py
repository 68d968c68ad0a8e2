"""An app for crash tests, importable by a worker subprocess (``perdure worker --app``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import perdure

app = perdure.App()


@app.activity
def slow_step(args: dict) -> int:
    """Marks that it started; in the doomed process (PERDURE_TEST_HANG set) it hangs."""
    marker = Path(args["marker_dir"]) / f"started-{args['x']}-{os.getpid()}"
    marker.write_text(str(perdure.activity_info().attempt))
    if os.environ.get("PERDURE_TEST_HANG"):
        time.sleep(600)
    return args["x"] * 10


@app.orchestration
async def pipeline(ctx: perdure.OrchestrationContext, args: dict) -> list[int]:
    out = []
    for x in range(args["steps"]):
        out.append(await ctx.call_activity(slow_step, {**args, "x": x}))
    return out
