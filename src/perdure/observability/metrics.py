"""Prometheus metrics of a worker: turns, activities, timers, instances, leases, store calls.

``PrometheusMetrics`` is a worker observer (:mod:`perdure.runtime.observe`) that records
into a ``prometheus_client`` registry: the process's default one, or the user's own::

    metrics = PrometheusMetrics(registry)            # registry=None: the default registry
    worker = perdure.Worker(app, store, observers=[metrics])

Label values are bounded: orchestration and activity names, outcomes, store operations;
never instance ids. The gauges read from the store are :class:`StoreGauges`.
"""

from __future__ import annotations

from typing import Any

from perdure.core.history import (
    ActivityScheduled,
    ContinuedAsNew,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionTerminated,
    TimerFired,
    TurnStarted,
)
from perdure.observability._require import require
from perdure.observability.timed import TimedStore
from perdure.runtime.observe import TurnReport, WorkerObserver

#: Buckets of the latency histograms, in seconds: from a fast store call to a long activity.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Buckets of the waits (queue wait, timer lateness), in seconds: up to an hour.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

_ENDED = {ExecutionCompleted: "completed", ExecutionFailed: "failed", ExecutionTerminated: "terminated"}


class PrometheusMetrics(WorkerObserver):
    """Counters and histograms of the workers it is installed on, in ``registry`` (the
    ``prometheus_client`` default registry when ``None``). One instance can serve several
    workers of a process; two instances cannot share a registry (the names would clash)."""

    def __init__(self, registry: Any = None) -> None:
        prometheus = require("prometheus_client", "metrics")
        # Each metric's children by label values: ``labels()`` looks them up under a lock,
        # this dictionary without one (a race only makes the same child twice).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        if registry is None:
            registry = prometheus.REGISTRY
        self.registry = registry
        counter, histogram = prometheus.Counter, prometheus.Histogram

        def make(kind: Any, name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> Any:
            return kind(name, doc, labels, registry=registry, **kw)

        self.turns = make(
            counter,
            "perdure_orchestration_turns_total",
            "Orchestration turns committed, by how they ran: cached (on the cached executor), replayed (full replay of the history), failed (failed by the engine).",
            ("orchestration", "outcome"),
        )
        self.turn_seconds = make(
            histogram,
            "perdure_orchestration_turn_seconds",
            "Time the orchestrator code of a turn took (replay and local activities included).",
            ("orchestration",),
            buckets=LATENCY_BUCKETS,
        )
        self.activities = make(
            counter,
            "perdure_activity_executions_total",
            "Activity attempts by outcome: completed, failed (raised), lease_lost (result dropped: another worker took the task over), discarded (the instance or execution had ended); retried counts the retries orchestrations scheduled.",
            ("activity", "outcome"),
        )
        self.activity_seconds = make(
            histogram,
            "perdure_activity_duration_seconds",
            "Time an activity attempt ran (started to finished).",
            ("activity",),
            buckets=LATENCY_BUCKETS,
        )
        self.activity_wait = make(
            histogram,
            "perdure_activity_queue_wait_seconds",
            "Time an activity task waited in the queue (scheduled to started).",
            ("activity",),
            buckets=WAIT_BUCKETS,
        )
        self.local_seconds = make(
            histogram,
            "perdure_local_activity_seconds",
            "Time a local activity took, run inside a turn (its _count: local activities run).",
            ("activity",),
            buckets=LATENCY_BUCKETS,
        )
        self.store_seconds = make(
            histogram,
            "perdure_store_call_seconds",
            "Time a store call took (one transaction, or a read), by store operation.",
            ("operation",),
            buckets=LATENCY_BUCKETS,
        )
        self.store_errors = make(
            counter, "perdure_store_call_errors_total", "Store calls that raised, by operation.", ("operation",)
        )
        self.started = make(
            counter,
            "perdure_instances_started_total",
            "Executions started (their first turn committed): new runs and continue-as-new executions.",
            ("orchestration",),
        )
        self.continued = make(
            counter,
            "perdure_instances_continued_as_new_total",
            "Executions that continued as new (so runs started = started - continued_as_new).",
            ("orchestration",),
        )
        self.ended = {
            status: make(
                counter,
                f"perdure_instances_{status}_total",
                f"Instances that ended {status.upper()}.",
                ("orchestration",),
            )
            for status in ("completed", "failed", "terminated")
        }
        self.timer_lateness = make(
            histogram,
            "perdure_timer_lateness_seconds",
            "How late a timer's turn ran after the timer was due.",
            ("orchestration",),
            buckets=WAIT_BUCKETS,
        )
        self.leases_lost = make(
            counter,
            "perdure_leases_lost_total",
            "Leases lost: orchestration (a turn's commit refused, nothing written) or activity (a running activity's lease could not be renewed).",
            ("kind",),
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- the observer --

    def wrap_store(self, store: Any) -> Any:
        """Time the worker's store calls (``perdure_store_call_seconds``)."""
        return TimedStore(store, self.on_store_call)

    def on_turn(self, turn: TurnReport) -> None:
        """Count the turn and what happened in it: starts, ends, timers fired, retries."""
        name = turn.name
        self._child(self.turns, name, turn.outcome).inc()
        self._child(self.turn_seconds, name).observe(turn.seconds)
        now = None
        for event in turn.events:
            kind = type(event)
            if kind is TurnStarted:
                now = event.timestamp
            elif kind is TimerFired:
                if now is not None and event.fire_at:  # type: ignore[attr-defined]
                    self._child(self.timer_lateness, name).observe(max(0.0, now - event.fire_at))  # type: ignore[attr-defined]
            elif kind is ActivityScheduled:
                if event.attempt > 1:  # type: ignore[attr-defined]
                    self._child(self.activities, event.name, "retried").inc()  # type: ignore[attr-defined]
            elif kind is ExecutionStarted:
                self._child(self.started, name).inc()
            elif kind is ContinuedAsNew:
                self._child(self.continued, name).inc()
            elif kind in _ENDED:
                self._child(self.ended[_ENDED[kind]], name).inc()

    def on_activity(self, name: str, outcome: str, seconds: float | None, queue_wait: float | None) -> None:
        """Count an activity attempt and time it."""
        self._child(self.activities, name, outcome).inc()
        if seconds is not None:
            self._child(self.activity_seconds, name).observe(seconds)
        if queue_wait is not None:
            self._child(self.activity_wait, name).observe(queue_wait)

    def on_local_activity(self, name: str, seconds: float) -> None:
        """Time a local activity."""
        self._child(self.local_seconds, name).observe(seconds)

    def on_lease_lost(self, kind: str) -> None:
        """Count a lost lease."""
        self._child(self.leases_lost, kind).inc()

    def on_store_call(self, operation: str, seconds: float, failed: bool) -> None:
        """Time a store call."""
        self._child(self.store_seconds, operation).observe(seconds)
        if failed:
            self._child(self.store_errors, operation).inc()
