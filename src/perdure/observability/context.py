"""The caller's trace context, captured where a run is started (``Client.start``).

OpenTelemetry is optional: without it installed, or without a span current, nothing is
captured and the run starts its own trace. The check costs a dictionary lookup when
OpenTelemetry was never imported.
"""

from __future__ import annotations

import sys


def capture_trace() -> dict[str, str] | None:
    """The current span's W3C trace context as a carrier (``traceparent`` and, when set,
    ``tracestate``), or ``None`` when OpenTelemetry is not in use or no valid span is
    current."""
    if "opentelemetry.trace" not in sys.modules:
        return None  # never imported, so no span can be current
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None
