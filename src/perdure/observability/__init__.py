"""Metrics and tracing for perdure workers, with the ecosystem's own libraries.

* :class:`PrometheusMetrics` (extra ``perdure[metrics]``): counters and histograms of
  turns, activities, timers, instances, leases and store calls, as a worker observer;
  :class:`StoreGauges` reads queue depth and age, instances by status, live workers and
  dead letters from the store at a modest interval.
* :class:`OpenTelemetryTracing` (extra ``perdure[otel]``): one trace per orchestration run,
  emitted once however often the run is replayed and on however many workers.
* :class:`TimedStore`: a store whose calls are timed by operation (metrics installs it).
* :func:`capture_trace`: the caller's trace context, as ``Client.start`` records it.

Install observers with ``perdure.Worker(app, store, observers=[PrometheusMetrics(), ...])``;
see docs/observability.md. Importing this package imports neither library: each class is
loaded on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PrometheusMetrics": "perdure.observability.metrics",
    "StoreGauges": "perdure.observability.gauges",
    "OpenTelemetryTracing": "perdure.observability.tracing",
    "TimedStore": "perdure.observability.timed",
    "capture_trace": "perdure.observability.context",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'perdure.observability' has no attribute {name!r}")
    return getattr(import_module(module), name)
