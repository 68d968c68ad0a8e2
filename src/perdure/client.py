"""The management API: start, inspect, signal and control orchestration instances.

:class:`Client` is synchronous and usable from any script or thread; :class:`AsyncClient`
is its asyncio twin (the same calls, awaited). Both sit on a :class:`~perdure.store.Store`
and validate their input before anything is stored.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from perdure.core.failure import Failure
from perdure.core.history import (
    EventDecodeError,
    EventRaised,
    ExecutionResumed,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
)
from perdure.core.ids import validate_instance_id
from perdure.core.payload import dumps_payload
from perdure.core.registry import registered_name
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import WaitingOn
from perdure.diagnosis import Diagnosis, FleetReport, Thresholds, diagnose, diagnose_all
from perdure.errors import (
    InstanceNotFoundError,
    InstanceStateError,
    InvalidInputError,
)
from perdure.runtime.eager import start_eagerly
from perdure.store.base import (
    DeadLetter,
    InstanceCount,
    InstanceQuery,
    InstanceRecord,
    Message,
    NewInstance,
    QueueDepth,
    Store,
    WorkerRecord,
)
from perdure.store.notify import INSTANCES

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


def _datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _timestamp(value: datetime | None, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise InvalidInputError(f"{what} must be timezone-aware (e.g. datetime.now(UTC))")
    return value.timestamp()


@dataclass(frozen=True, slots=True)
class InstanceState:
    """What an instance looks like now.

    ``history`` is the current execution's history when asked for (``get(iid,
    history=True)``), else None; ``history_event_count`` always equals its length.
    ``waiting_on`` lists what a running instance awaits (activities, timers, children,
    event names).
    """

    instance_id: str
    name: str
    status: OrchestrationStatus
    input: Any
    output: Any
    failure: Failure | None
    custom_status: Any
    created_at: datetime
    last_updated_at: datetime
    execution_id: int
    history_event_count: int
    parent_instance_id: str | None
    waiting_on: WaitingOn
    history: list[HistoryEvent] | None = None

    @property
    def is_terminal(self) -> bool:
        """True once COMPLETED, FAILED or TERMINATED."""
        return self.status.is_terminal

    @classmethod
    def from_record(cls, record: InstanceRecord, history: list[HistoryEvent] | None = None) -> InstanceState:
        """Build from a store row."""
        return cls(
            instance_id=record.instance_id,
            name=record.name,
            status=record.status,
            input=record.input,
            output=record.output,
            failure=record.failure,
            custom_status=record.custom_status,
            created_at=_datetime(record.created_at),
            last_updated_at=_datetime(record.last_updated_at),
            execution_id=record.execution_id,
            history_event_count=record.history_event_count if history is None else len(history),
            parent_instance_id=record.parent.instance_id if record.parent else None,
            waiting_on=record.waiting_on,
            history=history,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` form)."""
        from perdure.core.history import encode_event

        data: dict[str, Any] = {
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "failure": self.failure.to_dict() if self.failure else None,
            "custom_status": self.custom_status,
            "created_at": self.created_at.isoformat(),
            "last_updated_at": self.last_updated_at.isoformat(),
            "execution_id": self.execution_id,
            "history_event_count": self.history_event_count,
            "parent_instance_id": self.parent_instance_id,
            "waiting_on": self.waiting_on.to_dict(),
        }
        if self.history is not None:
            data["history"] = [encode_event(e) for e in self.history]
        return data


@dataclass(frozen=True, slots=True)
class InstancePage:
    """One page of :meth:`Client.list`; pass ``next_cursor`` back for the next page."""

    items: list[InstanceState]
    next_cursor: str | None


class Client:
    """Start and manage orchestration instances in ``store``.

    ``max_payload_bytes`` bounds the JSON size of inputs and event payloads.
    """

    def __init__(self, store: Store, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self.store = store
        self.max_payload_bytes = max_payload_bytes
        self._clock: Callable[[], float] = getattr(store, "clock", time.time)

    # -- starting --

    def start(
        self,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        instance_id: str | None = None,
        start_at: datetime | None = None,
        replace_terminal: bool = False,
        eager: bool = False,
    ) -> str:
        """Start ``orchestration`` (the function or its registered name) with ``input``;
        return the instance id.

        ``instance_id`` defaults to a random one; a user id is validated (no reserved
        sub-orchestration marker). Starting an id held by a non-terminal instance raises
        :class:`~perdure.errors.InstanceExistsError`; a terminal one is replaced only with
        ``replace_terminal=True``. ``start_at`` delays the first turn.

        ``eager=True``: if a worker of this process runs the orchestration on this same
        store object, the first turn (and the local activities it chains) runs in this
        thread and commits in the start's transaction, before ``start`` returns: the
        lowest start-to-result latency. Otherwise (or with a future ``start_at``) it is an
        ordinary start. See :mod:`perdure.runtime.eager`.
        """
        name = registered_name(orchestration, "orchestration")
        iid = uuid.uuid4().hex if instance_id is None else validate_instance_id(instance_id)
        dumps_payload(input, what=f"input of orchestration {name!r}", limit=self.max_payload_bytes)
        start = _timestamp(start_at, "start_at")
        if not isinstance(eager, bool):
            raise InvalidInputError(f"eager must be True or False, got {eager!r}")
        new = NewInstance(iid, name, input, start_at=start)
        if not (eager and start_eagerly(self.store, new, replace_terminal=replace_terminal)):
            self.store.create_instance(new, replace_terminal=replace_terminal)
        return iid

    def start_many(
        self,
        orchestration: str | Callable[..., Any],
        inputs: Iterable[Any],
        *,
        instance_ids: Iterable[str] | None = None,
    ) -> list[str]:
        """Start one instance of ``orchestration`` per input, all in one store transaction
        (all are created, or none); return their ids in input order. ``instance_ids`` names
        them (validated like :meth:`start`); by default they are random."""
        name = registered_name(orchestration, "orchestration")
        values = list(inputs)
        if instance_ids is None:
            ids = [uuid.uuid4().hex for _ in values]
        else:
            ids = [validate_instance_id(i) for i in instance_ids]
            if len(ids) != len(values):
                raise InvalidInputError(f"start_many got {len(values)} inputs but {len(ids)} instance ids")
            if len(set(ids)) != len(ids):
                raise InvalidInputError("start_many got the same instance id twice")
        for i, value in enumerate(values):
            dumps_payload(value, what=f"input {i} of orchestration {name!r}", limit=self.max_payload_bytes)
        self.store.create_instances([NewInstance(iid, name, value) for iid, value in zip(ids, values, strict=True)])
        return ids

    # -- reading --

    def get(self, instance_id: str, *, history: bool = False) -> InstanceState | None:
        """The instance's state (with its current execution's history if asked), or None."""
        record = self.store.get_instance(instance_id)
        if record is None:
            return None
        events = None
        if history:
            try:
                records = self.store.get_history(instance_id, execution_id=record.execution_id)
            except EventDecodeError as exc:
                raise EventDecodeError(f"the history of instance {instance_id!r} cannot be read: {exc}") from exc
            events = [r.event for r in records]
        return InstanceState.from_record(record, events)

    def wait(self, instance_id: str, timeout: float | None = None) -> InstanceState:
        """Block until the instance is terminal and return its state; raise ``TimeoutError``
        after ``timeout`` seconds (None: wait forever).

        Woken at once by commits in this process; otherwise polls with a backoff from 5 ms
        up to 0.5 s (other processes' commits).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        notifier = self.store.notifier
        delay = 0.005
        while True:
            seen = notifier.snapshot((INSTANCES,))
            state = self._require(instance_id)
            if state.is_terminal:
                return state
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"instance {instance_id!r} is still {state.status.value} after {timeout:g} s")
            notifier.wait((INSTANCES,), seen, delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, 0.5)

    def list(
        self,
        *,
        status: str | OrchestrationStatus | Iterable[str | OrchestrationStatus] | None = None,
        name: str | None = None,
        prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        parent_instance_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        sort: str = "created",
    ) -> InstancePage:
        """One page of instances, newest first, filtered by status (one or several), name,
        instance id ``prefix``, creation time and parent; pass the returned ``next_cursor``
        for the next page. ``sort="updated"`` orders by last update instead of creation
        (most recently updated first)."""
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInputError(f"limit must be an integer from 1 to 10000, got {limit!r}")
        if sort not in ("created", "updated"):
            raise InvalidInputError(f"sort must be 'created' or 'updated', got {sort!r}")
        page = self.store.list_instances(
            InstanceQuery(
                statuses=_statuses(status),
                name=name,
                created_after=_timestamp(created_after, "created_after"),
                created_before=_timestamp(created_before, "created_before"),
                parent_instance_id=parent_instance_id,
                instance_id_prefix=prefix,
                limit=limit,
                cursor=cursor,
                sort=sort,
            )
        )
        return InstancePage([InstanceState.from_record(r) for r in page.items], page.next_cursor)

    def history(self, instance_id: str, *, execution_id: int | None = None) -> list[HistoryEvent]:
        """The history of one execution of the instance (the current one by default), in
        order. Raises :class:`~perdure.errors.InstanceNotFoundError` for an unknown id and
        :class:`~perdure.errors.InvalidInputError` for an execution it never had."""
        record = self.store.get_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        if execution_id is None:
            execution_id = record.execution_id
        elif isinstance(execution_id, bool) or not isinstance(execution_id, int):
            raise InvalidInputError(f"execution_id must be an integer, got {execution_id!r}")
        elif not 1 <= execution_id <= record.execution_id:
            raise InvalidInputError(
                f"instance {instance_id!r} has no execution {execution_id} "
                f"(its executions are 1 to {record.execution_id})"
            )
        try:
            records = self.store.get_history(instance_id, execution_id=execution_id)
        except EventDecodeError as exc:
            raise EventDecodeError(f"the history of instance {instance_id!r} cannot be read: {exc}") from exc
        return [r.event for r in records]

    def workers(self, *, alive_within: float | None = None) -> list[WorkerRecord]:
        """The workers' heartbeat rows (registered names, concurrency and load), only those
        with a heartbeat in the last ``alive_within`` seconds if given. A worker removes its
        row when it stops; a crashed one's row stays, with its heartbeat aging."""
        if alive_within is not None and (
            isinstance(alive_within, bool) or not isinstance(alive_within, (int, float)) or alive_within < 0
        ):
            raise InvalidInputError(f"alive_within must be a number of seconds >= 0, got {alive_within!r}")
        return self.store.list_workers(alive_within=alive_within)

    def queue_depths(self) -> list[QueueDepth]:
        """The queues per orchestration and activity name: how many messages or tasks are
        queued, how many are due now, and how long the oldest due one has waited."""
        return self.store.queue_depths()

    # -- messages to an instance (processed in turn order, invariant 5) --

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Deliver external event ``name`` with ``data``. Events raised before the
        orchestration waits for them are kept and handed to the next wait on that name."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"event name must be a non-empty string, got {name!r}")
        dumps_payload(data, what=f"data of event {name!r}", limit=self.max_payload_bytes)
        self._send(instance_id, EventRaised(name=name, input=data, timestamp=self._clock()), "raise an event to")

    def terminate(self, instance_id: str, reason: str | None = None) -> None:
        """Terminate the instance and, recursively, its unfinished sub-orchestrations. Work
        already running finishes but its results are discarded."""
        self._send(instance_id, ExecutionTerminated(reason=_reason(reason), timestamp=self._clock()), "terminate")

    def suspend(self, instance_id: str, reason: str | None = None) -> None:
        """Suspend the instance: messages that arrive are kept but not acted on until
        :meth:`resume`."""
        self._send(instance_id, ExecutionSuspended(reason=_reason(reason), timestamp=self._clock()), "suspend")

    def resume(self, instance_id: str, reason: str | None = None) -> None:
        """Resume a suspended instance; messages kept meanwhile are applied in arrival order."""
        self._send(instance_id, ExecutionResumed(reason=_reason(reason), timestamp=self._clock()), "resume")

    def purge(self, instance_id: str) -> None:
        """Delete a terminal instance with its history and leftover messages."""
        state = self._require(instance_id)
        if not state.is_terminal:
            raise InstanceStateError(
                f"instance {instance_id!r} is {state.status.value}; only completed, failed or "
                f"terminated instances can be purged (terminate it first)"
            )
        self.store.purge_instances([instance_id])

    # -- diagnosis --

    def diagnose(self, instance_id: str, *, thresholds: Thresholds | None = None, **overrides: Any) -> Diagnosis:
        """Why ``instance_id`` is (not) finishing: ranked findings (``code``, ``summary``,
        ``evidence``, ``mitigation``), the ``verdict`` first, from the store's evidence.

        Thresholds are a :class:`~perdure.diagnosis.Thresholds` and/or its fields as
        keywords (``client.diagnose(iid, backlog_after=5)``). Raises
        :class:`~perdure.errors.InstanceNotFoundError` for an unknown id.
        """
        limits = Thresholds.with_overrides(thresholds, **overrides)
        return diagnose(self.store, instance_id, thresholds=limits)

    def diagnose_all(
        self,
        *,
        thresholds: Thresholds | None = None,
        limit: int = 50,
        oldest: int = 5,
        **overrides: Any,
    ) -> FleetReport:
        """The fleet report: counts by status and name, ages of running instances, workers,
        queues, and the live instances without progress for longer than ``stalled_after``
        (default 5 min; at most ``limit`` diagnosed) grouped by verdict, with the playbook's
        signal table. Thresholds as for :meth:`diagnose`."""
        if not isinstance(limit, int) or not 0 <= limit <= 10_000:
            raise InvalidInputError(f"limit must be an integer from 0 to 10000, got {limit!r}")
        return diagnose_all(
            self.store,
            thresholds=Thresholds.with_overrides(thresholds, **overrides),
            limit=limit,
            oldest=oldest,
        )

    # -- fleet --

    def instance_counts(self) -> list[InstanceCount]:
        """How many instances there are per orchestration name and status (statuses with no
        instance left out), from one aggregate query."""
        return self.store.instance_counts()

    def dead_letters(self, *, instance_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead-lettered messages (undeliverable after their tries, or undecodable), newest
        first, of one instance or of all; at most ``limit`` (1 to 10000)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInputError(f"limit must be an integer from 1 to 10000, got {limit!r}")
        return self.store.dead_letters(instance_id=instance_id, limit=limit)

    # -- helpers --

    def _require(self, instance_id: str) -> InstanceState:
        state = self.get(instance_id)
        if state is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        return state

    def _send(self, instance_id: str, event: HistoryEvent, verb: str) -> None:
        state = self._require(instance_id)
        if state.is_terminal:
            raise InstanceStateError(f"cannot {verb} instance {instance_id!r}: it is already {state.status.value}")
        # execution_id=None: operator messages go to whichever execution is current when they
        # are delivered, so none is lost across continue-as-new.
        self.store.enqueue_messages([Message(instance_id, event)])


def _reason(reason: str | None) -> str | None:
    if reason is not None and not isinstance(reason, str):
        raise InvalidInputError(f"reason must be a string, got {type(reason).__name__}")
    return reason


def _statuses(
    status: str | OrchestrationStatus | Iterable[str | OrchestrationStatus] | None,
) -> list[OrchestrationStatus] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    out = []
    for value in values:
        try:
            out.append(OrchestrationStatus(str(value).upper()))
        except ValueError:
            choices = ", ".join(s.value for s in OrchestrationStatus)
            raise InvalidInputError(f"unknown status {value!r}; expected one of {choices}") from None
    return out


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, as coroutines. Store calls run
    in a thread so the event loop is never blocked."""

    def __init__(self, store: Store, **options: Any) -> None:
        self.sync = Client(store, **options)

    async def start(self, orchestration: str | Callable[..., Any], input: Any = None, **kwargs: Any) -> str:
        """See :meth:`Client.start`."""
        return await asyncio.to_thread(self.sync.start, orchestration, input, **kwargs)

    async def start_many(
        self, orchestration: str | Callable[..., Any], inputs: Iterable[Any], **kwargs: Any
    ) -> list[str]:
        """See :meth:`Client.start_many`."""
        return await asyncio.to_thread(self.sync.start_many, orchestration, inputs, **kwargs)

    async def get(self, instance_id: str, *, history: bool = False) -> InstanceState | None:
        """See :meth:`Client.get`."""
        return await asyncio.to_thread(self.sync.get, instance_id, history=history)

    async def wait(self, instance_id: str, timeout: float | None = None) -> InstanceState:
        """See :meth:`Client.wait`."""
        return await asyncio.to_thread(self.sync.wait, instance_id, timeout)

    async def list(self, **filters: Any) -> InstancePage:
        """See :meth:`Client.list`."""
        return await asyncio.to_thread(self.sync.list, **filters)

    async def history(self, instance_id: str, *, execution_id: int | None = None) -> list[HistoryEvent]:
        """See :meth:`Client.history`."""
        return await asyncio.to_thread(self.sync.history, instance_id, execution_id=execution_id)

    async def workers(self, *, alive_within: float | None = None) -> list[WorkerRecord]:
        """See :meth:`Client.workers`."""
        return await asyncio.to_thread(self.sync.workers, alive_within=alive_within)

    async def queue_depths(self) -> list[QueueDepth]:
        """See :meth:`Client.queue_depths`."""
        return await asyncio.to_thread(self.sync.queue_depths)

    async def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """See :meth:`Client.raise_event`."""
        await asyncio.to_thread(self.sync.raise_event, instance_id, name, data)

    async def terminate(self, instance_id: str, reason: str | None = None) -> None:
        """See :meth:`Client.terminate`."""
        await asyncio.to_thread(self.sync.terminate, instance_id, reason)

    async def suspend(self, instance_id: str, reason: str | None = None) -> None:
        """See :meth:`Client.suspend`."""
        await asyncio.to_thread(self.sync.suspend, instance_id, reason)

    async def resume(self, instance_id: str, reason: str | None = None) -> None:
        """See :meth:`Client.resume`."""
        await asyncio.to_thread(self.sync.resume, instance_id, reason)

    async def purge(self, instance_id: str) -> None:
        """See :meth:`Client.purge`."""
        await asyncio.to_thread(self.sync.purge, instance_id)

    async def diagnose(self, instance_id: str, **kwargs: Any) -> Diagnosis:
        """See :meth:`Client.diagnose`."""
        return await asyncio.to_thread(self.sync.diagnose, instance_id, **kwargs)

    async def diagnose_all(self, **kwargs: Any) -> FleetReport:
        """See :meth:`Client.diagnose_all`."""
        return await asyncio.to_thread(self.sync.diagnose_all, **kwargs)

    async def instance_counts(self) -> list[InstanceCount]:
        """See :meth:`Client.instance_counts`."""
        return await asyncio.to_thread(self.sync.instance_counts)

    async def dead_letters(self, *, instance_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """See :meth:`Client.dead_letters`."""
        return await asyncio.to_thread(self.sync.dead_letters, instance_id=instance_id, limit=limit)
