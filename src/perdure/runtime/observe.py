"""Worker observers: what a worker tells metrics and tracing as things happen.

A :class:`WorkerObserver` gets a call at each point of interest of a worker: a turn
committed, an activity attempt begun and ended, a lease lost, a store call timed. Every
method is a no-op here; :mod:`perdure.observability` implements them with
``prometheus_client`` and OpenTelemetry. Install observers with
``Worker(app, store, observers=[...])``.

Observers are called on the worker's own threads (dispatch loops, the activity pool,
the activity event loop), so they must be thread-safe and quick; an observer that raises
is logged and never stops the worker. A worker without observers skips every call site
(:attr:`Observers.active`), so they cost nothing when unused.

Turns are reported once they have committed, with only their new events: a turn that
replays history reports nothing of what the history already held, and a turn whose commit
was refused (its lease lost) is reported as a lost lease, never as a turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from perdure.core.history import HistoryEvent, ParentRef
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.store.base import ActivityWorkItem

log = logging.getLogger("perdure.worker")

#: How a turn ran (:attr:`TurnReport.outcome`): on the cached executor, by replaying the
#: history, or failed by the engine without running user code (an unreadable history, an
#: engine error).
CACHED, REPLAYED, FAILED = "cached", "replayed", "failed"

#: How an activity attempt ended (:meth:`WorkerObserver.on_activity`): its outcome recorded
#: (``completed`` or ``failed``), its result dropped because another worker took the task
#: over (``lease_lost``), or discarded with a record because the instance or execution had
#: ended (``discarded``).
COMPLETED, ACTIVITY_FAILED, LEASE_LOST, DISCARDED = "completed", "failed", "lease_lost", "discarded"


@frozen_record
class TurnReport:
    """A committed turn: the orchestration ``name``, instance, run and execution; how it ran
    (``outcome``: :data:`CACHED`, :data:`REPLAYED` or :data:`FAILED`) and for how long
    (``seconds``, the orchestrator's own time, local activities included); the events it
    appended to history (``events``, in order: its ``TurnStarted`` first) and the status it
    left. ``trace`` is the run's trace context (:attr:`ExecutionStarted.trace`), ``parent``
    the parent task of a sub-orchestration, ``started_at`` when the execution started
    (``None`` if unknown)."""

    name: str
    instance_id: str
    run_id: str
    execution_id: int
    outcome: str
    seconds: float
    events: Sequence[HistoryEvent]
    status: OrchestrationStatus
    trace: dict[str, str] | None = None
    parent: ParentRef | None = None
    started_at: float | None = None


#: The turn the dispatch thread is running while it runs the turn's local activities (its
#: ``events`` and ``seconds`` not yet known): what a local activity belongs to.
running_turn: ContextVar[TurnReport | None] = ContextVar("perdure_running_turn", default=None)


#: Called when an activity attempt ends, with its completion event (``ActivityCompleted``
#: or ``ActivityFailed``): see :meth:`WorkerObserver.activity_started`.
ActivityEnd = Callable[[HistoryEvent], None]


class WorkerObserver:
    """Base of worker observers: every method does nothing. Override those you need."""

    def attach(self, worker: Any) -> None:
        """Called once by each :class:`~perdure.runtime.worker.Worker` it is installed on,
        before the worker starts (an observer may read the worker's store and id)."""

    def wrap_store(self, store: Any) -> Any:
        """The store the worker's work goes through: ``store`` itself, or a wrapper of it
        (that times its calls: :class:`perdure.observability.TimedStore`)."""
        return store

    def on_turn(self, turn: TurnReport) -> None:
        """A turn committed."""

    def activity_started(self, item: ActivityWorkItem, *, local: bool) -> ActivityEnd | None:
        """An activity attempt is about to run user code, on the thread (or in the event
        loop task) that runs it; ``local`` for a local activity run inside a turn. Return a
        callable to be called with its completion event when the user code returns or raises,
        on the same thread or task, or ``None``."""
        return None

    def on_activity(self, name: str, outcome: str, seconds: float | None, queue_wait: float | None) -> None:
        """An activity attempt's outcome was written (``outcome`` as :data:`COMPLETED`, ...):
        ``seconds`` it ran and ``queue_wait`` from being queued to being started (``None``
        when not known)."""

    def on_local_activity(self, name: str, seconds: float) -> None:
        """A local activity ran inside a turn (committed with the turn, or run again)."""

    def on_lease_lost(self, kind: str) -> None:
        """A lease was lost: ``"orchestration"`` (a turn's commit refused) or ``"activity"``
        (a running activity's lease could not be renewed)."""

    def on_store_call(self, operation: str, seconds: float, failed: bool) -> None:
        """A store method ran (:class:`perdure.observability.TimedStore` reports these)."""


class Observers:
    """The observers of one worker, called in turn; an observer that raises is logged and
    skipped. ``active`` is false when there are none: call sites test it first."""

    def __init__(self, observers: Sequence[WorkerObserver] = ()) -> None:
        for observer in observers:
            if not isinstance(observer, WorkerObserver):
                raise TypeError(
                    f"observers must be perdure.runtime.observe.WorkerObserver instances, got {type(observer).__name__}"
                )
        self.observers = tuple(observers)
        self.active = bool(self.observers)

    def _each(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        results = []
        for observer in self.observers:
            try:
                results.append(getattr(observer, method)(*args, **kwargs))
            except Exception:
                log.exception("worker observer %r failed in %s", observer, method)
        return results

    def attach(self, worker: Any) -> None:
        """See :meth:`WorkerObserver.attach`."""
        self._each("attach", worker)

    def wrap_store(self, store: Any) -> Any:
        """``store`` wrapped by each observer in turn (:meth:`WorkerObserver.wrap_store`)."""
        for observer in self.observers:
            store = observer.wrap_store(store)
        return store

    def on_turn(self, turn: TurnReport) -> None:
        """See :meth:`WorkerObserver.on_turn`."""
        self._each("on_turn", turn)

    def activity_started(self, item: ActivityWorkItem, *, local: bool) -> ActivityEnd | None:
        """See :meth:`WorkerObserver.activity_started`: one callable that ends them all."""
        ends = [end for end in self._each("activity_started", item, local=local) if end is not None]
        if not ends:
            return None

        def end_all(event: HistoryEvent) -> None:
            for end in reversed(ends):  # the last begun ends first (nested contexts)
                try:
                    end(event)
                except Exception:
                    log.exception("worker observer failed ending activity %r", item.name)

        return end_all

    def on_activity(self, name: str, outcome: str, seconds: float | None, queue_wait: float | None) -> None:
        """See :meth:`WorkerObserver.on_activity`."""
        self._each("on_activity", name, outcome, seconds, queue_wait)

    def on_local_activity(self, name: str, seconds: float) -> None:
        """See :meth:`WorkerObserver.on_local_activity`."""
        self._each("on_local_activity", name, seconds)

    def on_lease_lost(self, kind: str) -> None:
        """See :meth:`WorkerObserver.on_lease_lost`."""
        self._each("on_lease_lost", kind)
