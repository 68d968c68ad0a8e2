"""Stored golden histories keep replaying: no new commands, the same final state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perdure.core.executor import execute
from perdure.core.history import decode_event

from .golden import GOLDEN_DIR, SCENARIOS
from .golden_app import app

FILES = sorted(GOLDEN_DIR.glob("*.json"))


def test_every_scenario_has_a_golden_file():
    assert {p.stem for p in FILES} >= set(SCENARIOS), "run: PYTHONPATH=src python -m tests.core.golden"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_history_replays_without_new_commands(path: Path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    history = [decode_event(e) for e in doc["history"]]
    t = execute(app, doc["instance_id"], history, ())
    assert t.new_events == ()
    assert t.commands == ()
    assert t.replayed_events == len(history)
    assert str(t.status) == doc["status"]
    assert t.output == doc["output"]
    assert (t.failure.type if t.failure else None) == doc["failure_type"]
    assert t.custom_status == doc["custom_status"]
