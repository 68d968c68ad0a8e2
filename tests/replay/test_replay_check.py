"""The replay gate in Python: the stored histories of running instances replayed against
changed code, offline. A compatible change replays them all; a breaking one is reported
per instance with the position, what the history recorded and what the code does now."""

from __future__ import annotations

import pytest

import perdure
from perdure.replay import Problem, replay_histories, stored_histories
from perdure.testing import StepWorker

from .apps import app, breaking, compatible, only_v2, patched, versioned
from .fleet import COMPLETED, RUNNING, settle


def check(client: perdure.Client, code: perdure.App, **options):
    filter_fields = {k: options.pop(k) for k in list(options) if k in ("status", "name", "prefix")}
    return replay_histories(code, stored_histories(client, perdure.InstanceFilter(**filter_fields), **options))


def by_instance(report):
    return {r.instance_id: r for r in report.results}


def test_a_compatible_change_replays_every_running_instance(fleet):
    report = check(fleet, compatible)
    assert report.ok and report.problems == []
    assert sorted(by_instance(report)) == sorted(RUNNING)
    loyalty = by_instance(report)["loyalty-4"]
    assert loyalty.execution_id == 3 and loyalty.replayed_events > 0  # the current execution
    assert report.text() == "all 5 executions replay"


def test_a_breaking_change_names_every_affected_instance_with_its_position(fleet):
    report = check(fleet, breaking)
    assert not report.ok
    results = by_instance(report)
    assert sorted(r.instance_id for r in report.problems) == ["gift-5", "order-1", "order-2", "refund-3"]
    for iid in ("order-1", "order-2"):
        order = results[iid]
        assert (order.problem, order.position) == (Problem.NONDETERMINISM, 2)
        assert order.recorded == "ActivityScheduled 'charge' (task 1)"
        assert order.produced == "ActivityScheduled 'reserve' (task 1)"
        assert order.message.startswith(f"nondeterministic orchestration 'order_saga' (instance '{iid}', execution 1)")
        assert "at history index 2 (task 1) the history recorded ActivityScheduled 'charge'" in order.message
    refund = results["refund-3"]
    assert (refund.problem, refund.position, refund.recorded, refund.produced) == (
        Problem.NONDETERMINISM,
        5,
        "TimerCreated (task 2)",
        "ActivityScheduled 'notify' (task 2)",
    )
    gift = results["gift-5"]
    assert gift.problem is Problem.NOT_REGISTERED
    assert gift.message == "the app registers no orchestration named 'gift' (it registers: loyalty, order_saga, refund)"
    assert results["loyalty-4"].ok
    assert report.text().splitlines()[-1] == "4 of 5 executions would not replay (nondeterminism, not registered)"
    assert (
        "refund-3 (refund, execution 1, RUNNING) would not replay: nondeterminism at history index 5" in report.text()
    )


def test_the_filters_of_list_pick_the_instances(fleet):
    assert sorted(by_instance(check(fleet, breaking, name="order_saga"))) == ["order-1", "order-2"]
    assert sorted(by_instance(check(fleet, breaking, prefix="refund-"))) == ["refund-3"]
    assert sorted(by_instance(check(fleet, breaking, status="COMPLETED"))) == COMPLETED


def test_terminal_instances_are_checked_up_to_the_turn_that_ended_them(fleet):
    # order-6 completed; the compatible change adds a step before the return, which no
    # running instance has passed, so every point of order-6's path still replays.
    report = check(fleet, compatible, include_terminal=5)
    completed = by_instance(report)["order-6"]
    assert completed.ok and completed.status is perdure.OrchestrationStatus.COMPLETED
    assert completed.note.startswith("it has ended: replayed up to its last turn, at index ")
    assert by_instance(check(fleet, breaking, include_terminal=5))["order-6"].position == 2
    assert "order-6" not in by_instance(check(fleet, breaking, include_terminal=0))


def test_include_terminal_takes_the_most_recently_updated_per_orchestration(store):
    client = perdure.Client(store, app=app)
    worker = StepWorker(app, store, "setup")
    ids = client.start_many("gift", ["a", "b", "c"], instance_ids=["gift-a", "gift-b", "gift-c"])
    client.start("loyalty", 5, instance_id="loyalty-z")
    settle(worker)
    for iid in ["gift-b", "gift-c", "gift-a"]:  # finishing order: gift-a is the last updated
        client.raise_event(iid, "Wrapped")
        settle(worker)
    client.raise_event("loyalty-z", "Visit")
    settle(worker)
    assert all(client.get(i).is_terminal for i in [*ids, "loyalty-z"])
    report = check(client, app, include_terminal=2)
    assert sorted(by_instance(report)) == ["gift-a", "gift-c", "loyalty-z"]
    assert report.ok


def test_an_instance_failed_for_nondeterminism_replays_again_once_the_code_is_fixed(fleet_url):
    store = perdure.open_store(fleet_url)
    client = perdure.Client(store)
    client.raise_event("order-1", "PaymentConfirmed")
    StepWorker(breaking, store, "bad-deploy").turns_of("order-1")  # full replay: it fails
    state = client.get("order-1")
    assert state.failure.type == "perdure.errors.NonDeterminismError"
    failed = by_instance(check(client, app, name="order_saga", status="FAILED"))["order-1"]
    assert failed.ok  # the deployed code reproduces everything before the failing turn
    assert failed.note == "it has ended: replayed up to its last turn, at index 5"
    assert by_instance(check(client, breaking, status="FAILED"))["order-1"].position == 2
    store.close()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_history_that_cannot_be_decoded_is_reported(fleet_url):
    import sqlite3

    path = fleet_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE history SET event = '{\"kind\": \"Teleported\"}' WHERE instance_id = 'order-2' AND sequence = 2"
        )
    db.close()
    store = perdure.open_store(fleet_url, create=False)
    result = by_instance(check(perdure.Client(store), compatible))["order-2"]
    store.close()
    assert result.problem is Problem.UNDECODABLE
    assert "the history of instance 'order-2' cannot be read" in result.message
    assert "Teleported" in result.message


def test_the_breaking_change_made_as_a_new_version_or_behind_a_patch_replays(fleet):
    """Running instances replay on the version they started with (1), and a patch keeps
    their old path; dropping version 1 while they run is reported for each of them."""
    assert check(fleet, versioned).ok
    assert check(fleet, patched).ok
    report = check(fleet, only_v2)
    assert sorted(r.instance_id for r in report.problems) == ["order-1", "order-2"]
    for result in report.problems:
        assert result.problem is Problem.NOT_REGISTERED
        assert result.message == (
            "the instance runs version 1 of orchestration 'order_saga', which the app no longer registers "
            "(it registers versions 2): keep version 1 registered until its instances finish"
        )
