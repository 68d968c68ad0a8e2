"""Prometheus metrics of a worker, read through a private registry, on both stores."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

import perdure
from perdure.observability import PrometheusMetrics, StoreGauges, TimedStore
from perdure.observability.timed import TIMED_OPERATIONS
from perdure.store.base import NewInstance
from tests.observability.obs_app import app


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    found = registry.get_sample_value(metric, labels)
    return 0.0 if found is None else found


def test_a_run_with_a_retry_a_failure_a_timer_and_a_local_activity_is_counted(store, client):
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    with perdure.Worker(app, store, observers=[metrics]):
        ok = client.start("journey")
        bad = client.start("doomed")
        assert client.wait(ok, timeout=60).status is perdure.OrchestrationStatus.COMPLETED
        assert client.wait(bad, timeout=60).status is perdure.OrchestrationStatus.FAILED
    history = client.history(ok)
    turns = sum(1 for e in history if type(e).__name__ == "TurnStarted")

    # turns by outcome: every committed turn of both instances and of the child
    all_turns = sum(
        value(registry, "perdure_orchestration_turns_total", orchestration=name, outcome=outcome)
        for name in ("journey", "doomed", "child")
        for outcome in ("cached", "replayed", "failed")
    )
    journey_turns = sum(
        value(registry, "perdure_orchestration_turns_total", orchestration="journey", outcome=o)
        for o in ("cached", "replayed", "failed")
    )
    # the turn its local activity woke committed with the turn that ran it: one commit
    assert journey_turns == turns - 1
    assert all_turns >= turns + 2
    assert value(registry, "perdure_orchestration_turn_seconds_count", orchestration="journey") == turns - 1

    # activities: the flaky one failed once, was retried once, then completed
    assert value(registry, "perdure_activity_executions_total", activity="flaky", outcome="failed") == 1
    assert value(registry, "perdure_activity_executions_total", activity="flaky", outcome="retried") == 1
    assert value(registry, "perdure_activity_executions_total", activity="flaky", outcome="completed") == 1
    assert value(registry, "perdure_activity_executions_total", activity="broken", outcome="failed") == 1
    assert value(registry, "perdure_activity_executions_total", activity="greet", outcome="completed") == 1
    assert value(registry, "perdure_activity_duration_seconds_count", activity="flaky") == 2
    assert value(registry, "perdure_activity_queue_wait_seconds_count", activity="flaky") == 2
    assert value(registry, "perdure_local_activity_seconds_count", activity="stamp") == 1
    # the local activity never went through the task queue
    assert value(registry, "perdure_activity_executions_total", activity="stamp", outcome="completed") == 0

    # timers: the retry delay and the orchestration's own timer fired, each measured once
    assert value(registry, "perdure_timer_lateness_seconds_count", orchestration="journey") == 2

    # instances
    assert value(registry, "perdure_instances_started_total", orchestration="journey") == 1
    assert value(registry, "perdure_instances_started_total", orchestration="child") == 1
    assert value(registry, "perdure_instances_completed_total", orchestration="journey") == 1
    assert value(registry, "perdure_instances_completed_total", orchestration="child") == 1
    assert value(registry, "perdure_instances_failed_total", orchestration="doomed") == 1
    assert value(registry, "perdure_instances_failed_total", orchestration="journey") == 0

    # store calls, by operation
    assert value(registry, "perdure_store_call_seconds_count", operation="run_round") > 0
    assert value(registry, "perdure_store_call_seconds_count", operation="heartbeat") > 0


def test_a_terminated_instance_is_counted(store, client):
    registry = CollectorRegistry()
    with perdure.Worker(app, store, observers=[PrometheusMetrics(registry)]):
        iid = client.start("journey", start_at=None)
        client.terminate(iid, "stop")
        assert client.wait(iid, timeout=60).status is perdure.OrchestrationStatus.TERMINATED
    assert value(registry, "perdure_instances_terminated_total", orchestration="journey") == 1


def test_store_gauges_read_queues_instances_workers_and_dead_letters(store, client):
    registry = CollectorRegistry()
    StoreGauges(client, interval=0).register(registry)
    client.start("journey")
    client.start("journey")
    assert value(registry, "perdure_instances", orchestration="journey", status="PENDING") == 2
    assert value(registry, "perdure_queue_depth", kind="orchestration", name="journey") == 2
    assert value(registry, "perdure_queue_visible", kind="orchestration", name="journey") == 2
    assert value(registry, "perdure_workers_live") == 0
    assert value(registry, "perdure_dead_letters") == 0
    with perdure.Worker(app, store):
        assert value(registry, "perdure_workers_live") == 1


def test_store_gauges_are_read_at_most_once_per_interval(store, client):
    registry = CollectorRegistry()
    now = [0.0]
    StoreGauges(client, interval=15, clock=lambda: now[0]).register(registry)
    assert value(registry, "perdure_instances", orchestration="journey", status="PENDING") == 0
    client.start("journey")
    now[0] = 14.0
    assert value(registry, "perdure_instances", orchestration="journey", status="PENDING") == 0
    now[0] = 15.0
    assert value(registry, "perdure_instances", orchestration="journey", status="PENDING") == 1


def test_every_store_operation_is_timed_rewind_and_reset_included(store):
    assert {"rewind", "reset", "run_round", "create_and_run", "queue_depths", "get_history"} <= TIMED_OPERATIONS
    assert "close" not in TIMED_OPERATIONS
    calls: list[tuple[str, bool]] = []
    timed = TimedStore(store, lambda op, seconds, failed: calls.append((op, failed)))
    timed.queue_depths()
    timed.create_instance(NewInstance("once", "journey", None))
    with pytest.raises(perdure.InstanceExistsError):
        timed.create_instance(NewInstance("once", "journey", None))
    assert timed.url == store.url
    assert calls == [("queue_depths", False), ("create_instance", False), ("create_instance", True)]


def test_an_observer_that_is_not_one_is_refused(store):
    with pytest.raises(perdure.InvalidInputError, match="WorkerObserver"):
        perdure.Worker(app, store, observers=[object()])
