"""OpenTelemetry traces of orchestration runs: one trace per run, emitted once.

``OpenTelemetryTracing`` is a worker observer (:mod:`perdure.runtime.observe`). A run's
trace is:

* the **run span** (``orchestration <name>``), from the run's start to its end, emitted
  when the run ends; its parent is the caller's span (the trace context ``Client.start``
  captured, :attr:`ExecutionStarted.trace`), or the parent run's span for a
  sub-orchestration, so a child's run and everything under it belongs to its parent's
  trace;
* under it, a **turn span** per committed turn (``turn <name>``, attribute
  ``perdure.turn.outcome``: cached, replayed or failed), a **timer span** per timer (from
  its creation to its due time), and an **activity span** per activity attempt
  (``activity <name>``, attributes ``perdure.activity.attempt`` and
  ``perdure.activity.outcome``), open while the activity runs, so the user's own
  instrumentation (HTTP clients, database drivers) nests under it.

Nothing is emitted on replay: a turn reports only the events it appended, once its commit
landed, so a run replayed on many workers, across restarts, is still one trace without
duplicates. Because the run span is emitted last, by whichever worker ends the run, its id
is derived from the run token (and a run without a caller's trace gets a trace id derived
from its root run's token): every worker computes the same ids without sharing anything
but the history.

Spans carry the store's timestamps (the turn's time, an activity's start), so their times
are the store clock's.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any

from perdure.core.history import (
    ActivityFailed,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionTerminated,
    HistoryEvent,
    ParentRef,
    TimerCreated,
    TurnStarted,
)
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.observability._require import require
from perdure.runtime.observe import ActivityEnd, TurnReport, WorkerObserver, running_turn
from perdure.runtime.translate import ROOT_RUN_KEY
from perdure.store.base import ActivityWorkItem

#: The instrumentation scope of perdure's spans.
TRACER_NAME = "perdure"
#: How many runs' trace contexts a worker keeps (the rest are read from history again).
RUNS_KEPT = 4096

_NS = 1_000_000_000
_END_EVENTS = (ExecutionCompleted, ExecutionFailed, ExecutionTerminated)


@frozen_record
class RunTrace:
    """One run's trace: its run token, and the contexts its spans start in: ``inside``, the
    run span's (derived, for the spans under it), and ``outside``, the run span's own
    parent's (the parent run's span, the caller's, or none)."""

    run_id: str
    inside: Any
    outside: Any


class OpenTelemetryTracing(WorkerObserver):
    """Traces the runs of the workers it is installed on, with ``tracer_provider`` (the
    global one when ``None``), which must be the OpenTelemetry SDK's ``TracerProvider``
    (perdure derives the ids of run spans, which needs the SDK's tracer)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self._trace = require("opentelemetry.trace", "otel")
        require("opentelemetry.sdk.trace", "otel")
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if tracer_provider is None:
            tracer_provider = self._trace.get_tracer_provider()
        tracer = tracer_provider.get_tracer(TRACER_NAME)
        if not hasattr(tracer, "id_generator"):
            raise TypeError(
                f"OpenTelemetryTracing needs the OpenTelemetry SDK's TracerProvider, got {type(tracer_provider).__name__} "
                f"(set one with opentelemetry.trace.set_tracer_provider, or pass tracer_provider=)"
            )
        self._ids = _DerivedIds(tracer.id_generator)
        tracer.id_generator = self._ids
        self.tracer = tracer
        self._propagator = TraceContextTextMapPropagator()
        self._runs: OrderedDict[str, RunTrace] = OrderedDict()
        self._runs_lock = threading.Lock()
        self._store: Any = None

    def attach(self, worker: Any) -> None:
        """Keep the worker's store: an activity whose run this worker has not seen reads
        the run's trace context from its history."""
        self._store = worker.store

    # -- turns --

    def on_turn(self, turn: TurnReport) -> None:
        """Emit the spans of what the committed turn did: the turn, the timers it created,
        and the run span if the run ended."""
        run = self._remember(turn)
        parent = run.inside
        turn_start = None
        for event in turn.events:
            if isinstance(event, TurnStarted):
                if turn_start is None:  # turns chained by local activities commit as one
                    turn_start = event.timestamp
            elif isinstance(event, TimerCreated):
                span = self.tracer.start_span(
                    f"timer {turn.name}",
                    context=parent,
                    start_time=_ns(event.timestamp),
                    attributes={**_ids(turn), "perdure.timer.task_id": event.task_id},
                )
                span.end(_ns(max(event.fire_at, event.timestamp)))
        if turn_start is not None:
            span = self.tracer.start_span(
                f"turn {turn.name}",
                context=parent,
                start_time=_ns(turn_start),
                attributes={
                    **_ids(turn),
                    "perdure.turn.outcome": turn.outcome,
                    "perdure.turn.events": len(turn.events),
                },
            )
            span.end(_ns(turn_start + turn.seconds))
        if turn.status.is_terminal:
            self._end_run(turn, run, turn_start)

    def _end_run(self, turn: TurnReport, run: RunTrace, turn_start: float | None) -> None:
        end = next((e.timestamp for e in turn.events if isinstance(e, _END_EVENTS)), turn_start or 0.0)
        start = turn.started_at if turn.started_at is not None else end
        inside = self._trace.get_current_span(run.inside).get_span_context()
        token = self._ids.force(inside.span_id, inside.trace_id)
        try:
            span = self.tracer.start_span(
                f"orchestration {turn.name}",
                context=run.outside,
                start_time=_ns(start),
                attributes={**_ids(turn), "perdure.run_id": run.run_id, "perdure.status": turn.status.value},
            )
        finally:
            self._ids.release(token)
        if turn.status is OrchestrationStatus.FAILED:
            failure = next((e.failure for e in turn.events if isinstance(e, ExecutionFailed)), None)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, failure.message if failure else None))
        span.end(_ns(max(end, start)))
        with self._runs_lock:
            self._runs.pop(run.run_id, None)

    # -- activities --

    def activity_started(self, item: ActivityWorkItem, *, local: bool) -> ActivityEnd | None:
        """Open the attempt's span and make it current while the activity runs."""
        run = self._run_of(item, local)
        if run is None:
            return None
        from opentelemetry import context as otel_context

        span = self.tracer.start_span(
            f"activity {item.name}",
            context=run.inside,
            attributes={
                "perdure.instance_id": item.instance_id,
                "perdure.execution_id": item.execution_id,
                "perdure.activity.task_id": item.task_id,
                "perdure.activity.attempt": item.attempt,
                "perdure.activity.local": local,
            },
        )
        token = otel_context.attach(self._trace.set_span_in_context(span))

        def end(event: HistoryEvent) -> None:
            otel_context.detach(token)
            if isinstance(event, ActivityFailed):
                span.set_attribute("perdure.activity.outcome", "failed")
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.failure.message))
            else:
                span.set_attribute("perdure.activity.outcome", "completed")
            span.end()

        return end

    def _run_of(self, item: ActivityWorkItem, local: bool) -> RunTrace | None:
        if local:
            turn = running_turn.get()
            return None if turn is None else self._remember(turn)
        if item.run_id is not None:
            with self._runs_lock:
                run = self._runs.get(item.run_id)
            if run is not None:
                return run
        return self._read_run(item)

    def _read_run(self, item: ActivityWorkItem) -> RunTrace | None:
        """The run of ``item`` as its history records it (its execution's first event)."""
        if self._store is None:
            return None
        try:
            records = self._store.get_history(item.instance_id, execution_id=item.execution_id, limit=1)
        except Exception:  # the span is at stake, never the activity
            return None
        started = records[0].event if records else None
        if not isinstance(started, ExecutionStarted) or started.run_id is None:
            return None
        return self._keep(self._run_trace(started.run_id, started.trace, started.parent))

    # -- the run's context --

    def _remember(self, turn: TurnReport) -> RunTrace:
        with self._runs_lock:
            run = self._runs.get(turn.run_id)
        if run is None:
            run = self._keep(self._run_trace(turn.run_id, turn.trace, turn.parent))
        return run

    def _keep(self, run: RunTrace) -> RunTrace:
        with self._runs_lock:
            self._runs[run.run_id] = run
            self._runs.move_to_end(run.run_id)
            while len(self._runs) > RUNS_KEPT:
                self._runs.popitem(last=False)
        return run

    def _run_trace(self, run_id: str, carrier: dict[str, str] | None, parent: ParentRef | None) -> RunTrace:
        """The contexts of a run's spans. The run span's id is derived from the run token;
        its trace id is the caller's, else derived from the root run's token. Its parent is
        the parent run's span (a sub-orchestration), else the caller's span, else none."""
        caller = self._caller_span(carrier)
        trace_id = int(caller.trace_id) if caller is not None else _root_trace_id(carrier, run_id)
        flags = caller.trace_flags if caller is not None else self._trace.TraceFlags(self._trace.TraceFlags.SAMPLED)
        inside = self._context(trace_id, _span_id(run_id), flags)
        if parent is not None and parent.run_id is not None:
            outside = self._context(trace_id, _span_id(parent.run_id), flags)
        elif caller is not None:
            outside = self._trace.set_span_in_context(self._trace.NonRecordingSpan(caller))
        else:
            outside = self._trace.set_span_in_context(self._trace.INVALID_SPAN)
        return RunTrace(run_id, inside, outside)

    def _context(self, trace_id: int, span_id: int, flags: Any) -> Any:
        span_context = self._trace.SpanContext(trace_id=trace_id, span_id=span_id, is_remote=True, trace_flags=flags)
        return self._trace.set_span_in_context(self._trace.NonRecordingSpan(span_context))

    def _caller_span(self, carrier: dict[str, str] | None) -> Any:
        """The span context the carrier's ``traceparent`` names, or ``None``."""
        if not carrier or "traceparent" not in carrier:
            return None
        span_context = self._trace.get_current_span(self._propagator.extract(carrier)).get_span_context()
        return span_context if span_context.is_valid else None


def _ids(turn: TurnReport) -> dict[str, Any]:
    return {
        "perdure.orchestration": turn.name,
        "perdure.instance_id": turn.instance_id,
        "perdure.execution_id": turn.execution_id,
    }


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


def _digest(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big")
    return value or 1  # an all-zero id is invalid


def _span_id(run_id: str) -> int:
    """The id of the run span of ``run_id``."""
    return _digest(f"perdure-run:{run_id}", 8)


def _root_trace_id(carrier: dict[str, str] | None, run_id: str) -> int:
    """The trace id of a run without a caller's trace: derived from the token of the run
    at the root of its tree (:data:`perdure.runtime.translate.ROOT_RUN_KEY`), or its own."""
    root = (carrier or {}).get(ROOT_RUN_KEY, run_id)
    return _digest(f"perdure-trace:{root}", 16)


class _DerivedIds:
    """The tracer's id generator, except for the one span being started on this thread with
    ids perdure derived (:meth:`force`): the run span."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._forced: ContextVar[tuple[int, int] | None] = ContextVar("perdure_forced_ids", default=None)

    def force(self, span_id: int, trace_id: int) -> Any:
        return self._forced.set((span_id, trace_id))

    def release(self, token: Any) -> None:
        self._forced.reset(token)

    def generate_span_id(self) -> int:
        forced = self._forced.get()
        return self.inner.generate_span_id() if forced is None else forced[0]

    def generate_trace_id(self) -> int:
        forced = self._forced.get()
        return self.inner.generate_trace_id() if forced is None else forced[1]

    def is_trace_id_random(self) -> bool:
        return self._forced.get() is None and bool(getattr(self.inner, "is_trace_id_random", lambda: True)())
