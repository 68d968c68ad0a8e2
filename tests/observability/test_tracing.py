"""OpenTelemetry traces of runs, read with the SDK's in-memory exporter, on both stores."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import perdure
from perdure.core.history import ActivityScheduled, TimerCreated, TurnStarted
from perdure.observability import OpenTelemetryTracing
from tests.observability import obs_app
from tests.observability.obs_app import app


@pytest.fixture
def traced():
    """A tracer provider exporting to memory, and the tracer user code and callers use."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    obs_app.user_tracer = provider.get_tracer("user")
    yield provider, exporter
    obs_app.user_tracer = None


def wait_until_waiting_for_event(client: perdure.Client, iid: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        record = client.store.get_instance(iid)
        if record is not None and record.waiting_on.events:
            return
        time.sleep(0.02)
    raise AssertionError(f"{iid} never waited for its event")


def children_of(spans, parent) -> list:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def count(history, kind) -> int:
    return sum(1 for e in history if isinstance(e, kind))


def test_a_run_across_a_worker_restart_is_one_trace_without_duplicates(store, client, traced):
    provider, exporter = traced
    caller_tracer = provider.get_tracer("caller")
    with caller_tracer.start_as_current_span("caller") as caller:
        iid = client.start("traced")
    with perdure.Worker(app, store, observers=[OpenTelemetryTracing(provider)]):
        wait_until_waiting_for_event(client, iid)
    # worker 2: an empty cache, so its first turn replays the history worker 1 wrote
    client.raise_event(iid, "go", "ada")
    with perdure.Worker(app, store, observers=[OpenTelemetryTracing(provider)]):
        assert client.wait(iid, timeout=60).output == ["ok", "hello ada"]
    spans = exporter.get_finished_spans()

    # one trace: the caller's
    assert {s.context.trace_id for s in spans} == {caller.get_span_context().trace_id}
    # no duplicates: every span id once
    assert len({s.context.span_id for s in spans}) == len(spans)

    [run] = [s for s in spans if s.name == "orchestration traced"]
    assert run.parent.span_id == caller.get_span_context().span_id
    assert run.attributes["perdure.status"] == "COMPLETED"
    history = client.history(iid)
    under_run = Counter(s.name for s in children_of(spans, run))
    assert under_run == {
        "turn traced": count(history, TurnStarted),
        "timer traced": count(history, TimerCreated),  # the retry delay and the timer
        "activity flaky": count(history, ActivityScheduled),  # two attempts
        "orchestration traced_child": 1,
    }
    attempts = sorted(
        (s.attributes["perdure.activity.attempt"], s.attributes["perdure.activity.outcome"])
        for s in children_of(spans, run)
        if s.name == "activity flaky"
    )
    assert attempts == [(1, "failed"), (2, "completed")]
    outcomes = Counter(s.attributes["perdure.turn.outcome"] for s in children_of(spans, run) if s.name == "turn traced")
    assert outcomes["replayed"] >= 1  # worker 2's first turn

    # the child's run, under the parent's run, with its activity and the user's span in it
    [child_run] = [s for s in spans if s.name == "orchestration traced_child"]
    child_history = client.history(child_run.attributes["perdure.instance_id"])
    assert Counter(s.name for s in children_of(spans, child_run)) == {
        "turn traced_child": count(child_history, TurnStarted),
        "activity traced_greet": 1,
    }
    [greet] = [s for s in spans if s.name == "activity traced_greet"]
    [user] = [s for s in spans if s.name == "user work"]
    assert user.parent.span_id == greet.context.span_id
    # nothing else: the caller, the run, what is under the run and the child's, the user's
    assert len(spans) == 2 + sum(under_run.values()) + len(children_of(spans, child_run)) + 1


def test_a_run_started_outside_any_span_starts_its_own_trace_with_its_children(store, client, traced):
    provider, exporter = traced
    iid = client.start("traced")
    with perdure.Worker(app, store, observers=[OpenTelemetryTracing(provider)]):
        wait_until_waiting_for_event(client, iid)
        client.raise_event(iid, "go", "bob")
        client.wait(iid, timeout=60)
    spans = exporter.get_finished_spans()
    [run] = [s for s in spans if s.name == "orchestration traced"]
    assert run.parent is None
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}
    [child_run] = [s for s in spans if s.name == "orchestration traced_child"]
    assert child_run.parent.span_id == run.context.span_id


def test_a_failed_run_and_its_failed_activity_are_marked_as_errors(store, client, traced):
    provider, exporter = traced
    iid = client.start("doomed")
    with perdure.Worker(app, store, observers=[OpenTelemetryTracing(provider)]):
        assert client.wait(iid, timeout=60).status is perdure.OrchestrationStatus.FAILED
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["orchestration doomed"].status.status_code.name == "ERROR"
    assert spans["activity broken"].status.status_code.name == "ERROR"
    assert spans["activity broken"].attributes["perdure.activity.outcome"] == "failed"


def test_a_local_activity_has_its_span_in_its_run(store, client, traced):
    provider, exporter = traced
    iid = client.start("journey")
    with perdure.Worker(app, store, observers=[OpenTelemetryTracing(provider)]):
        client.wait(iid, timeout=60)
    spans = exporter.get_finished_spans()
    [run] = [s for s in spans if s.name == "orchestration journey"]
    [local] = [s for s in spans if s.name == "activity stamp"]
    assert local.attributes["perdure.activity.local"] is True
    assert local.parent.span_id == run.context.span_id
