"""The export format (``perdure-history``, version 1) and the pytest helper that replays
exported histories: what the store holds survives the round trip, the files replay as the
store does, and a document that is not an export is refused in one clear line."""

from __future__ import annotations

import json

import pytest

import perdure
from perdure.core.history import encode_event
from perdure.replay import ExportedHistory, export_history, replay_histories, stored_histories
from perdure.testing import ReplayMismatch, replay

from .apps import app, breaking, compatible


def exported(client: perdure.Client, iid: str, tmp_path, **options) -> str:
    path = tmp_path / f"{iid}.json"
    path.write_text(json.dumps(export_history(client, iid, **options).to_dict()), encoding="utf-8")
    return str(path)


def test_an_export_holds_the_stored_events_in_their_stored_encoding(fleet):
    document = export_history(fleet, "order-1").to_dict()
    assert {k: document[k] for k in ("format", "version", "instance_id", "name", "status")} == {
        "format": "perdure-history",
        "version": 1,
        "instance_id": "order-1",
        "name": "order_saga",
        "status": "RUNNING",
    }
    assert document["run_id"] == fleet.get("order-1").run_id
    [execution] = document["executions"]
    assert execution["execution_id"] == 1
    assert execution["events"] == [encode_event(e) for e in fleet.history("order-1")]
    assert [e["kind"] for e in execution["events"]] == [
        "TurnStarted",
        "ExecutionStarted",
        "ActivityScheduled",
        "TurnStarted",
        "ActivityCompleted",
    ]
    back = ExportedHistory.from_dict(json.loads(json.dumps(document)), "order-1.json")
    assert back.executions[0].events == tuple(fleet.history("order-1"))
    assert back.to_dict() == document


def test_all_executions_exports_each_one_and_each_is_checked(fleet, tmp_path):
    document = export_history(fleet, "loyalty-4", all_executions=True)
    assert [e.execution_id for e in document.executions] == [1, 2, 3]
    report = replay(compatible, exported(fleet, "loyalty-4", tmp_path, all_executions=True))
    assert [(r.execution_id, r.note is not None) for r in report.results] == [(1, True), (2, True), (3, False)]
    assert export_history(fleet, "loyalty-4").executions[0].execution_id == 3  # by default the current one


def test_exported_files_replay_as_the_store_does(fleet, tmp_path):
    files = [exported(fleet, iid, tmp_path) for iid in ("order-1", "order-2", "refund-3", "loyalty-4", "gift-5")]
    for code in (compatible, breaking):
        from_store = replay_histories(code, stored_histories(fleet))
        from_files = replay_histories(code, [e for f in files for e in ExportedHistory.load(f).executions])
        key = lambda r: r.instance_id  # noqa: E731
        assert [
            (r.instance_id, r.problem, r.position, r.recorded, r.produced) for r in sorted(from_files.results, key=key)
        ] == [
            (r.instance_id, r.problem, r.position, r.recorded, r.produced) for r in sorted(from_store.results, key=key)
        ]
        assert {r.source for r in from_files.results} == set(files)


def test_the_pytest_helper_passes_returns_the_report_and_fails_as_an_assertion(fleet, tmp_path):
    path = exported(fleet, "order-1", tmp_path)
    report = replay(compatible, path)
    assert report.ok and [r.instance_id for r in report.results] == ["order-1"]
    with pytest.raises(AssertionError) as caught:
        replay(breaking, path, exported(fleet, "refund-3", tmp_path))
    assert isinstance(caught.value, ReplayMismatch)
    assert str(caught.value) == caught.value.report.text()
    lines = str(caught.value).splitlines()
    assert (
        lines[0]
        == f"order-1 (order_saga, execution 1, RUNNING, from {path}) would not replay: nondeterminism at history index 2"
    )
    assert lines[1:3] == [
        "    recorded: ActivityScheduled 'charge' (task 1)",
        "    now:      ActivityScheduled 'reserve' (task 1)",
    ]
    assert lines[-1] == "2 of 2 executions would not replay (nondeterminism)"


def test_the_pytest_helper_takes_a_parsed_export_or_an_exported_object(fleet):
    history = export_history(fleet, "order-2")
    assert replay(app, history).ok
    assert replay(app, history.to_dict()).ok
    assert replay(app, *history.executions).ok
    with pytest.raises(ReplayMismatch):
        replay(breaking, history.to_dict())


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"version": 1}, "not a perdure history export"),
        ({"format": "temporal"}, "not a perdure history export"),
        ({"format": "perdure-history", "version": 2}, "written in format version 2, newer than the version 1"),
        ({"format": "perdure-history", "version": "1"}, "the format version must be a positive integer"),
        ({"format": "perdure-history", "version": 1, "name": "x"}, "instance_id must be a non-empty string"),
        (
            {"format": "perdure-history", "version": 1, "instance_id": "i", "name": "x"},
            "executions must be a non-empty list",
        ),
        (
            {
                "format": "perdure-history",
                "version": 1,
                "instance_id": "i",
                "name": "x",
                "executions": [{"events": []}],
            },
            "executions[0] must be an object with an execution_id",
        ),
        (
            {
                "format": "perdure-history",
                "version": 1,
                "instance_id": "i",
                "name": "x",
                "status": "DONE",
                "executions": [],
            },
            "unknown status 'DONE'",
        ),
    ],
)
def test_a_document_that_is_not_an_export_is_refused_in_one_line(document, error):
    with pytest.raises(perdure.InvalidInputError) as caught:
        replay(app, document)
    assert str(caught.value).startswith("<dict>: ")
    assert error in str(caught.value)


def test_a_file_that_is_not_json_or_missing_is_refused(tmp_path):
    path = tmp_path / "notes.json"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(perdure.InvalidInputError, match=r"notes.json: not valid JSON"):
        replay(app, path)
    with pytest.raises(perdure.InvalidInputError, match=r"cannot read '.*missing.json': No such file"):
        replay(app, str(tmp_path / "missing.json"))
    with pytest.raises(perdure.InvalidInputError, match="at least one history"):
        replay(app)
    with pytest.raises(perdure.InvalidInputError, match="not int"):
        replay(app, 7)


def test_an_event_that_cannot_be_decoded_is_reported_not_raised():
    document = {
        "format": "perdure-history",
        "version": 1,
        "instance_id": "order-9",
        "name": "order_saga",
        "run_id": "r",
        "executions": [{"execution_id": 1, "events": [{"v": 1, "kind": "TurnStarted"}, {"kind": "Teleported"}]}],
    }
    with pytest.raises(ReplayMismatch) as caught:
        replay(app, document)
    [result] = caught.value.report.results
    assert result.problem == "undecodable"
    assert result.message.startswith("history event 1 of execution 1 cannot be decoded: cannot decode history event")
