"""Golden histories: stored histories that must keep replaying (invariant 6, compatibility).

Each scenario is played once with the code in :mod:`golden_app` and saved as
``golden/<name>.json`` in the stored event form. Existing files are never rewritten: run
``python -m tests.core.golden`` (with ``PYTHONPATH=src``) to add files for new scenarios.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perdure.core.history import encode_event

from .builders import (
    Scenario,
    activity_completed,
    activity_failed,
    child_completed,
    event,
    resumed,
    suspended,
    terminated,
    timer_fired,
)
from .golden_app import app

GOLDEN_DIR = Path(__file__).parent / "golden"
FORMAT = 1


def _order_saga() -> Scenario:
    s = Scenario(app, "order-42")
    s.start("order_saga", {"id": 42, "amount": 10}, at=1_700_000_000.0)
    s.turn(1_700_000_001.0, activity_failed(1, "ConnectionError", "gateway down"))
    s.turn(1_700_000_006.0, timer_fired(2))
    s.turn(
        1_700_000_007.0,
        activity_completed(3, {"charged": 10}),
        activity_completed(3, {"charged": 10}),
    )
    s.turn(1_700_000_100.0, event("PaymentConfirmed", {"ok": True}))
    s.turn(1_700_000_101.0, activity_completed(6, "p1"), activity_completed(5, "p0"))
    s.turn(1_700_000_102.0, activity_completed(7, "p2"), timer_fired(4))
    s.turn(1_700_000_200.0, child_completed(8, {"tracking": "T-1"}))
    return s


def _approval() -> Scenario:
    s = Scenario(app, "approval-7")
    s.start("approval", None, at=1_700_000_000.0)
    s.turn(1_700_000_300.0, event("approval", "wrong case"), activity_completed(99))
    s.turn(1_700_000_600.0, timer_fired(1))
    s.turn(1_700_000_700.0, event("Cancel", "by user"))
    return s


def _batch() -> Scenario:
    s = Scenario(app, "batch-1")
    s.start("batch", {"total": 0}, at=1_700_000_000.0)
    s.turn(1_700_000_010.0, event("Item", "apple"), event("Item", "pear"))
    s.turn(1_700_000_011.0, activity_completed(1, 3), event("Item", "plum"))
    return s


def _fragile() -> Scenario:
    s = Scenario(app, "fragile-1")
    s.start("fragile", None, at=1_700_000_000.0)
    s.turn(1_700_000_001.0, activity_failed(1, "KeyError", "'sku'"))
    return s


def _supervised() -> Scenario:
    s = Scenario(app, "super-1")
    s.start("supervised", None, at=1_700_000_000.0)
    s.turn(1_700_000_001.0, suspended("investigating"), child_completed(1, "w0"))
    s.turn(1_700_000_002.0, resumed("fine"))
    s.turn(1_700_000_003.0, terminated("no longer needed"))
    return s


SCENARIOS = {
    "order_saga_retry_events_fanout_child": _order_saga,
    "approval_timeout_then_cancel_race": _approval,
    "batch_continue_as_new_with_carried_events": _batch,
    "fragile_activity_failure": _fragile,
    "supervised_suspend_resume_terminate": _supervised,
}


def record(name: str) -> dict[str, Any]:
    """Play scenario ``name`` and return its golden document."""
    s = SCENARIOS[name]()
    last = s.last
    return {
        "format": FORMAT,
        "scenario": name,
        "instance_id": s.instance_id,
        "status": str(last.status),
        "output": last.output,
        "failure_type": last.failure.type if last.failure else None,
        "custom_status": last.custom_status,
        "history": [encode_event(e) for e in s.history],
    }


def write_missing() -> list[Path]:
    """Write a golden file for every scenario that has none; never touch existing files."""
    GOLDEN_DIR.mkdir(exist_ok=True)
    written = []
    for name in SCENARIOS:
        path = GOLDEN_DIR / f"{name}.json"
        if not path.exists():
            path.write_text(json.dumps(record(name), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_missing():
        print(f"wrote {written_path}")
