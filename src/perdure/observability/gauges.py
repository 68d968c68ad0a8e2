"""Gauges read from the store: queues, instances by status, live workers, dead letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from perdure.observability._require import require

#: How often the store is read, at most (seconds): the reads are aggregate queries.
DEFAULT_INTERVAL = 15.0
#: A worker counts as live when its heartbeat is this recent (seconds).
LIVE_WITHIN = 60.0


class StoreGauges:
    """A ``prometheus_client`` collector of the store's state, read through ``client`` (a
    :class:`perdure.Client`) when scraped, and at most once per ``interval`` seconds (a
    scrape in between gets the last reading). Register it on a registry::

        StoreGauges(perdure.Client(store)).register(registry)

    Every worker of a fleet reads the same store: scrape the gauges from one place (the
    web server's ``/metrics``, or one worker), or aggregate them with ``max``.

    Gauges: ``perdure_queue_depth`` / ``perdure_queue_visible`` /
    ``perdure_queue_oldest_visible_age_seconds`` by ``kind`` (orchestration, activity) and
    ``name``; ``perdure_instances`` by ``orchestration`` and ``status``;
    ``perdure_workers_live``; ``perdure_dead_letters``.
    """

    def __init__(self, client: Any, *, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self._core = require("prometheus_client.core", "metrics")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
            raise ValueError(f"interval must be a number of seconds >= 0, got {interval!r}")
        self.client = client
        self.interval = float(interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._families: list[Any] = []

    def register(self, registry: Any = None) -> StoreGauges:
        """Register on ``registry`` (the default registry when ``None``); return self."""
        if registry is None:
            registry = require("prometheus_client", "metrics").REGISTRY
        registry.register(self)
        return self

    def describe(self) -> list[Any]:
        """Nothing: registering must not read the store (``prometheus_client`` would call
        :meth:`collect` to learn the names otherwise)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The gauges, read from the store if the last reading is ``interval`` old."""
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.interval:
                self._families = self._read()
                self._read_at = now
            families = self._families
        yield from families

    def _read(self) -> list[Any]:
        core = self._core
        depth = core.GaugeMetricFamily(
            "perdure_queue_depth",
            "Messages (orchestration) or tasks (activity) queued, by name.",
            labels=("kind", "name"),
        )
        visible = core.GaugeMetricFamily(
            "perdure_queue_visible", "Queued messages or tasks due now, by name.", labels=("kind", "name")
        )
        age = core.GaugeMetricFamily(
            "perdure_queue_oldest_visible_age_seconds",
            "How long the oldest due message or task has been due, by name (0 when none is due).",
            labels=("kind", "name"),
        )
        for queue in self.client.queue_depths():
            labels = (queue.kind, queue.name or "")
            depth.add_metric(labels, queue.depth)
            visible.add_metric(labels, queue.visible)
            age.add_metric(labels, queue.oldest_visible_age or 0.0)
        instances = core.GaugeMetricFamily(
            "perdure_instances", "Instances by orchestration name and status.", labels=("orchestration", "status")
        )
        for count in self.client.instance_counts():
            instances.add_metric((count.name, count.status.value), count.count)
        workers = core.GaugeMetricFamily(
            "perdure_workers_live", f"Workers with a heartbeat in the last {LIVE_WITHIN:g} seconds."
        )
        workers.add_metric((), len(self.client.workers(alive_within=LIVE_WITHIN)))
        letters = core.GaugeMetricFamily("perdure_dead_letters", "Dead-lettered messages in the store.")
        letters.add_metric((), self.client.queue_stats().dead_letters)
        return [depth, visible, age, instances, workers, letters]
