"""The evidence diagnosis reads: one instance's rows, and an index over its history.

Reads go through the :class:`~perdure.store.base.Store` interface only. They are not one
snapshot: the runtime may commit between two of them, so the rules treat "the task row is
gone and no completion is queued" as "moved on meanwhile", never as an error.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    EventRaised,
    ExecutionFailed,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
)
from perdure.core.records import frozen_record
from perdure.core.registry import versions_in
from perdure.errors import InstanceNotFoundError
from perdure.store.base import (
    ActivityWorkItem,
    DeadLetter,
    DiscardRecord,
    InstanceRecord,
    QueuedMessage,
    QueueStats,
    Store,
    WorkerRecord,
)


@frozen_record
class InstanceEvidence:
    """Everything the store holds about one instance, read for a diagnosis."""

    record: InstanceRecord
    history: tuple[HistoryEvent, ...]
    tasks: tuple[ActivityWorkItem, ...]
    messages: tuple[QueuedMessage, ...]
    dead_letters: tuple[DeadLetter, ...]
    discards: tuple[DiscardRecord, ...]

    @classmethod
    def read(cls, store: Store, instance_id: str) -> InstanceEvidence:
        """Read the evidence of ``instance_id``; :class:`InstanceNotFoundError` if there is
        no such instance. Tasks are read before messages, so a completion that happens in
        between is seen as a queued message rather than missed."""
        record = store.get_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        history = tuple(r.event for r in store.get_history(instance_id, execution_id=record.execution_id))
        tasks = tuple(store.activity_tasks(instance_id))
        messages = tuple(store.pending_messages(instance_id))
        return cls(
            record=record,
            history=history,
            tasks=tasks,
            messages=messages,
            dead_letters=tuple(store.dead_letters(instance_id=instance_id, limit=20)),
            discards=tuple(store.discarded_messages(instance_id=instance_id, limit=50)),
        )

    def task_row(self, task_id: int) -> ActivityWorkItem | None:
        """The queued or running task row of the current execution's ``task_id``."""
        execution = self.record.execution_id
        return next((t for t in self.tasks if t.task_id == task_id and t.execution_id == execution), None)

    def queued_completion(self, task_id: int) -> QueuedMessage | None:
        """A queued (not yet applied) completion of ``task_id`` for the current execution."""
        for m in self.messages:
            if m.execution_id in (None, self.record.execution_id) and getattr(m.event, "task_id", None) == task_id:
                return m
        return None


@dataclass(slots=True)
class HistoryIndex:
    """The current execution's history, indexed by task id and kind."""

    activities: dict[int, tuple[int, ActivityScheduled]] = field(default_factory=dict)
    activity_outcomes: dict[int, tuple[int, ActivityCompleted | ActivityFailed]] = field(default_factory=dict)
    timers: dict[int, tuple[int, TimerCreated]] = field(default_factory=dict)
    children: dict[int, tuple[int, SubOrchestrationCreated]] = field(default_factory=dict)
    child_failures: dict[int, tuple[int, SubOrchestrationFailed]] = field(default_factory=dict)
    events: list[tuple[int, EventRaised]] = field(default_factory=list)
    suspended: ExecutionSuspended | None = None
    terminated: ExecutionTerminated | None = None
    failed: ExecutionFailed | None = None
    events_total: int = 0

    @classmethod
    def build(cls, history: Sequence[HistoryEvent]) -> HistoryIndex:
        """Index ``history``."""
        index = cls(events_total=len(history))
        for pos, event in enumerate(history):
            match event:
                case ActivityScheduled():
                    index.activities[event.task_id] = (pos, event)
                case ActivityCompleted() | ActivityFailed():
                    index.activity_outcomes[event.task_id] = (pos, event)
                case TimerCreated():
                    index.timers[event.task_id] = (pos, event)
                case SubOrchestrationCreated():
                    index.children[event.task_id] = (pos, event)
                case SubOrchestrationFailed():
                    index.child_failures[event.task_id] = (pos, event)
                case SubOrchestrationCompleted():
                    pass
                case EventRaised():
                    index.events.append((pos, event))
                case ExecutionSuspended():
                    index.suspended = event
                case ExecutionTerminated():
                    index.terminated = event
                case ExecutionFailed():
                    index.failed = event
                case _:
                    pass
        return index

    def activity_failures(self) -> list[tuple[ActivityScheduled, ActivityFailed]]:
        """Every failed activity attempt, in history order, with its scheduling event."""
        out = []
        for _, outcome in sorted(self.activity_outcomes.values(), key=lambda entry: entry[0]):
            if isinstance(outcome, ActivityFailed) and outcome.task_id in self.activities:
                out.append((self.activities[outcome.task_id][1], outcome))
        return out

    def retry_origin(
        self, history: Sequence[HistoryEvent], timer_task_id: int
    ) -> tuple[ActivityScheduled | SubOrchestrationCreated, Failure] | None:
        """The failed attempt a retry timer waits to repeat: the last activity or child
        failure recorded before the timer (a turn appends the failure it applies, then the
        timer it provoked)."""
        entry = self.timers.get(timer_task_id)
        if entry is None:
            return None
        for pos in range(entry[0] - 1, -1, -1):
            event = history[pos]
            if isinstance(event, ActivityFailed) and event.task_id in self.activities:
                return self.activities[event.task_id][1], event.failure
            if isinstance(event, SubOrchestrationFailed) and event.task_id in self.children:
                return self.children[event.task_id][1], event.failure
        return None

    def previous_failure(self, scheduled: ActivityScheduled) -> Failure | None:
        """The failure of the attempt before ``scheduled`` (same activity name, one attempt
        earlier, scheduled before it)."""
        pos = self.activities[scheduled.task_id][0] if scheduled.task_id in self.activities else 0
        best: tuple[int, Failure] | None = None
        for task_id, (spos, event) in self.activities.items():
            if event.name != scheduled.name or spos >= pos or event.attempt != scheduled.attempt - 1:
                continue
            outcome = self.activity_outcomes.get(task_id)
            failed = outcome is not None and isinstance(outcome[1], ActivityFailed)
            if failed and (best is None or spos > best[0]):
                best = (spos, outcome[1].failure)  # type: ignore[union-attr]
        return best[1] if best else None

    def median_duration(self, name: str) -> tuple[float | None, int]:
        """The median time from scheduling to completion of ``name``'s successful runs in
        this execution (queue wait included), and how many runs it is taken over."""
        samples = []
        for task_id, (_, event) in self.activities.items():
            outcome = self.activity_outcomes.get(task_id)
            if event.name == name and outcome is not None and isinstance(outcome[1], ActivityCompleted):
                samples.append(max(0.0, outcome[1].timestamp - event.timestamp))
        return (statistics.median(samples) if samples else None), len(samples)


@dataclass(slots=True)
class Environment:
    """Store-wide evidence shared by every instance of one diagnosis run (read once)."""

    store: Store
    clock: Callable[[], float]
    worker_timeout: float
    _now: float | None = None
    _workers: list[WorkerRecord] | None = None
    _queues: QueueStats | None = None

    @property
    def now(self) -> float:
        """The moment every age and duration is measured from: the clock read once, when
        first asked. That is after the first instance's evidence was read, so a turn that
        commits between the diagnosis's start and its read cannot postdate ``now`` (which
        would show a one-hour timeout with more than an hour left)."""
        if self._now is None:
            self._now = self.clock()
        return self._now

    @property
    def workers(self) -> list[WorkerRecord]:
        """Every worker row."""
        if self._workers is None:
            self._workers = self.store.list_workers()
        return self._workers

    @property
    def alive(self) -> list[WorkerRecord]:
        """Workers whose heartbeat is recent enough."""
        return [w for w in self.workers if self.now - w.heartbeat_at <= self.worker_timeout]

    @property
    def stale(self) -> list[WorkerRecord]:
        """Worker rows whose heartbeat stopped (crashed without removing their row)."""
        return [w for w in self.workers if self.now - w.heartbeat_at > self.worker_timeout]

    @property
    def queues(self) -> QueueStats:
        """Depth and age of the queues."""
        if self._queues is None:
            self._queues = self.store.queue_stats()
        return self._queues

    def serving(self, kind: str, name: str, version: int | None = None) -> list[WorkerRecord]:
        """Live workers that registered orchestration (``kind="orchestration"``) or activity
        ``name``; for an orchestration with a ``version``, that version of it."""
        if kind != "orchestration":
            return [w for w in self.alive if name in w.activities]
        return [
            w
            for w in self.alive
            if (versions := versions_in(w.orchestrations, name)) and (version is None or version in versions)
        ]
