"""The pure parts of diagnosis: near-miss event names, ranking, thresholds, JSON forms."""

from __future__ import annotations

import json

import pytest

import perdure
from perdure.diagnosis import (
    Code,
    Diagnosis,
    Finding,
    Thresholds,
    normalized_event_name,
)
from perdure.diagnosis.model import rank_findings


@pytest.mark.parametrize("sent", ["paymentConfirmed", "PAYMENTCONFIRMED", "payment_confirmed", " Payment-Confirmed "])
def test_names_differing_only_in_case_spacing_or_punctuation_are_a_near_miss(sent):
    assert normalized_event_name(sent) == normalized_event_name("PaymentConfirmed")


@pytest.mark.parametrize("sent", ["PaymentConfirmedV2", "PaymentRefused", "Confirmed"])
def test_other_names_are_not_a_near_miss(sent):
    assert normalized_event_name(sent) != normalized_event_name("PaymentConfirmed")


def _f(code: Code) -> Finding:
    return Finding(code, str(code), {"n": 1}, "do something")


def test_live_ranking_puts_blockers_first_and_progress_last():
    found = [
        _f(Code.PROGRESSING),
        _f(Code.ACTIVITY_FAILED_NO_RETRY),
        _f(Code.WAITING_FOR_EVENT),
        _f(Code.EVENT_NAME_MISMATCH),
        _f(Code.NO_WORKER),
        _f(Code.SUSPENDED),
    ]
    assert [f.code for f in rank_findings(found, terminal=False)] == [
        "suspended",
        "no_worker",
        "event_name_mismatch",
        "waiting_for_event",
        "activity_failed_no_retry",
        "progressing",
    ]


def test_terminal_ranking_puts_the_cause_before_the_status():
    found = [_f(Code.DEAD_LETTER), _f(Code.FAILED), _f(Code.ACTIVITY_FAILED_NO_RETRY)]
    assert [f.code for f in rank_findings(found, terminal=True)] == [
        "activity_failed_no_retry",
        "failed",
        "dead_letter",
    ]


def test_a_diagnosis_has_the_verdict_of_its_top_finding_and_a_json_form():
    d = Diagnosis("i1", "wf", "RUNNING", (_f(Code.BACKLOG), _f(Code.PROGRESSING)), 1_700_000_000.0)
    assert d.verdict == "backlog" and d.stuck and d.finding("progressing") is d.findings[1]
    data = json.loads(json.dumps(d.to_dict()))
    assert data["verdict"] == "backlog" and data["generated_at"] == "2023-11-14T22:13:20.000Z"
    assert data["findings"][0] == {
        "code": "backlog",
        "summary": "backlog",
        "evidence": {"n": 1},
        "mitigation": "do something",
    }
    with pytest.raises(ValueError):
        Diagnosis("i1", "wf", "RUNNING", (), 0.0)


def test_thresholds_reject_unknown_names_and_negative_values():
    assert Thresholds.with_overrides(backlog_after=2).backlog_after == 2
    assert Thresholds.with_overrides(Thresholds(timer_far=5), backlog_after=2).timer_far == 5
    with pytest.raises(perdure.InvalidInputError, match="unknown threshold backlog"):
        Thresholds.with_overrides(backlog=2)
    with pytest.raises(perdure.InvalidInputError, match="history_events"):
        Thresholds(history_events=-1)


def test_diagnosis_reads_the_store_interface_only_and_never_imports_the_runtime():
    import ast
    from pathlib import Path

    import perdure.diagnosis

    allowed = ("perdure.core", "perdure.diagnosis", "perdure.errors", "perdure.store.base")
    found = []
    for path in sorted(Path(perdure.diagnosis.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
            if module.startswith("perdure") and not any(module == a or module.startswith(a + ".") for a in allowed):
                found.append(f"{path.name}:{node.lineno} imports {module}")
            if isinstance(node, ast.Import):
                found += [f"{path.name} imports {a.name}" for a in node.names if a.name.startswith("perdure")]
    assert found == []
