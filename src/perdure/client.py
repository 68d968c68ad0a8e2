"""The management API: start, inspect, signal and control orchestration instances.

:class:`Client` is synchronous and usable from any script or thread; :class:`AsyncClient`
is its asyncio twin (the same calls, awaited). Both sit on a :class:`~perdure.store.Store`
and validate their input before anything is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from perdure import run_operations
from perdure.core.context import check_version
from perdure.core.failure import Failure
from perdure.core.history import (
    EventDecodeError,
    EventRaised,
    ExecutionResumed,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    RunOrigin,
)
from perdure.core.ids import validate_instance_id
from perdure.core.payload import DEFAULT_MAX_PAYLOAD_BYTES, dumps_payload
from perdure.core.records import frozen_record
from perdure.core.registry import App, registered_name
from perdure.core.status import TERMINAL_STATUSES, OrchestrationStatus
from perdure.core.turn import WaitingOn
from perdure.diagnosis import Diagnosis, FleetReport, Thresholds, diagnose, diagnose_all
from perdure.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceStateError,
    InvalidInputError,
    RegistrationError,
    StoreUnavailableError,
)
from perdure.instance_filter import InstanceFilter, StatusArg, timestamp
from perdure.observability.context import capture_trace
from perdure.runtime.eager import hand_over, served_here, start_eagerly
from perdure.runtime.handed import UNRUN_STARTS, HandedStart
from perdure.store.base import (
    DeadLetter,
    InstanceCount,
    InstanceRecord,
    Message,
    NewInstance,
    QueueDepth,
    QueueStats,
    Store,
    WorkerRecord,
)
from perdure.store.common.routing import purges_orphans
from perdure.store.common.tokens import random_hex
from perdure.store.notify import INSTANCES
from perdure.views import event_dict, iso_datetime, waiting_on_dict

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "AsyncClient", "Client", "InstanceFilter", "InstancePage", "InstanceState"]

_BULK_PAGE = 500  # instances per page (and per store write) of a bulk operation
_LIVE = frozenset(OrchestrationStatus) - TERMINAL_STATUSES
#: The waits before a client write is tried again after the store was unavailable (its
#: request id makes the retry apply once even if the first try had committed).
RETRY_DELAYS = (0.05, 0.25, 1.0)
MAX_REQUEST_ID_LENGTH = 256
#: How many of its starts a client remembers for :meth:`Client.wait` (see ``_started``).
STARTS_REMEMBERED = 1024
#: Seconds a wait in a process with a worker on the same store counts on that worker alone,
#: before it follows other processes' instance ends (see :meth:`Client.wait`).
LOCAL_WAIT = 0.1

T = TypeVar("T")


def _datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def generated_instance_id(created_at: float) -> str:
    """The id of an instance started without one: 32 hex characters, the first 12 the
    creation time in milliseconds, the other 20 random (80 bits). Ids so made sort by
    creation time, so a store's indexes keyed by instance id (its rows, its history) take
    new instances at their end, in pages that are already in memory, rather than
    scattered over every page of a store that holds many instances."""
    return f"{int(created_at * 1000) & 0xFFFFFFFFFFFF:012x}{random_hex(10)}"


@frozen_record
class InstanceState:
    """What an instance looks like now.

    ``output`` is a completed instance's result; ``failure`` a failed one's error;
    ``termination_reason`` the reason given when a TERMINATED instance was terminated
    (``client.terminate(iid, reason=...)``, ``perdure terminate ID --reason ...``; for a
    child terminated with its parent, the parent's reason; None if none was given). The
    store keeps it in the instance's output column, so ``output`` of a terminated instance
    is None.

    ``history`` is the current execution's history when asked for (``get(iid,
    history=True)``), else None; ``history_event_count`` always equals its length.
    ``waiting_on`` lists what a running instance awaits (activities, timers, children,
    event names). ``run_id`` is the run token of the run the state describes: each run of
    an instance id (a start, a start after a purge, a ``replace_terminal`` start) has its
    own. ``version`` is the orchestration version the current execution runs (``None``
    until a worker took the first turn of a start that left it open).
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
    run_id: str = ""
    termination_reason: str | None = None
    version: int | None = 1

    @property
    def is_terminal(self) -> bool:
        """True once COMPLETED, FAILED or TERMINATED."""
        return self.status.is_terminal

    @classmethod
    def from_record(cls, record: InstanceRecord, history: list[HistoryEvent] | None = None) -> InstanceState:
        """Build from a store row."""
        terminated = record.status is OrchestrationStatus.TERMINATED
        reason = record.output if terminated and isinstance(record.output, str) else None
        return cls(
            instance_id=record.instance_id,
            name=record.name,
            status=record.status,
            input=record.input,
            output=None if terminated else record.output,
            failure=record.failure,
            custom_status=record.custom_status,
            created_at=_datetime(record.created_at),
            last_updated_at=_datetime(record.last_updated_at),
            execution_id=record.execution_id,
            history_event_count=record.history_event_count if history is None else len(history),
            parent_instance_id=record.parent.instance_id if record.parent else None,
            waiting_on=record.waiting_on,
            history=history,
            run_id=record.run_id,
            termination_reason=reason,
            version=record.version,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` form); times are ISO 8601 in UTC."""
        data: dict[str, Any] = {
            "instance_id": self.instance_id,
            "name": self.name,
            "version": self.version,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "failure": self.failure.to_dict() if self.failure else None,
            "termination_reason": self.termination_reason,
            "custom_status": self.custom_status,
            "created_at": iso_datetime(self.created_at),
            "last_updated_at": iso_datetime(self.last_updated_at),
            "execution_id": self.execution_id,
            "history_event_count": self.history_event_count,
            "parent_instance_id": self.parent_instance_id,
            "run_id": self.run_id,
            "waiting_on": waiting_on_dict(self.waiting_on),
        }
        if self.history is not None:
            data["history"] = [event_dict(e) for e in self.history]
        return data


@frozen_record
class InstancePage:
    """One page of :meth:`Client.list`; pass ``next_cursor`` back for the next page."""

    items: list[InstanceState]
    next_cursor: str | None


class Client:
    """Start and manage orchestration instances in ``store``.

    ``app``: the :class:`~perdure.App` whose orchestrations may be started; with it,
    :meth:`start` and :meth:`start_many` refuse a name the app does not register, at the
    call. Without it the name is not checked: an instance whose orchestration no live
    worker registers waits for one (diagnosis: ``no_worker``).

    ``max_payload_bytes`` bounds the JSON size of inputs and event payloads (workers apply
    the same default limit to activity results and orchestration outputs).

    Writes (``start``, ``start_many``, ``raise_event``, ``terminate``, ``suspend``,
    ``resume``) are idempotent: each carries a request id (``request_id=``, or a random one)
    that the store records with the write, and a write the store could not confirm (the
    connection was lost during its commit: :class:`~perdure.errors.StoreUnavailableError`)
    is tried again with the same id, so it applies once. Pass your own ``request_id`` to
    make your own retries of a call safe too (the store remembers ids for a day).
    """

    def __init__(
        self, store: Store, *, app: App | None = None, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        if app is not None and not isinstance(app, App):
            raise InvalidInputError(f"app must be a perdure.App, got {type(app).__name__}")
        if not isinstance(max_payload_bytes, int) or max_payload_bytes < 1:
            raise InvalidInputError(f"max_payload_bytes must be a positive integer, got {max_payload_bytes!r}")
        self.store = store
        self.app = app
        self.max_payload_bytes = max_payload_bytes
        self._clock: Callable[[], float] = getattr(store, "clock", time.time)
        # Instances this client started (random id, no request id of the caller's), with
        # the version of the notifier's INSTANCES topic read before their start: if it has
        # not moved since, no instance ended since, so the first read of :meth:`wait` is
        # skipped (it would only find the instance running, and take the GIL from the
        # worker threads running it).
        self._started: OrderedDict[str, int] = OrderedDict()
        self._started_lock = threading.Lock()

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
        request_id: str | None = None,
        version: int | None = None,
    ) -> str:
        """Start ``orchestration`` (the function or its registered name) with ``input``;
        return the instance id. A ``replace_terminal`` start, or a start after a purge, is a
        new *run* of the id: nothing of the earlier run reaches it.

        ``instance_id`` defaults to a random one; a user id is validated (no reserved
        sub-orchestration marker). Starting an id held by a non-terminal instance raises
        :class:`~perdure.errors.InstanceExistsError`; a terminal one is replaced only with
        ``replace_terminal=True``. ``start_at`` delays the first turn. A client made with
        an ``app`` refuses a name that app does not register
        (:class:`~perdure.errors.RegistrationError`).

        ``version``: the orchestration version the instance runs, for as long as it runs
        (until it continues as new on another). By default the latest version the client's
        ``app`` registers; a client without an app leaves it to the worker that takes the
        first turn, which runs its own latest and records it.

        ``eager=True``: if a worker of this process runs the orchestration on this same
        store object, the first turn (and the local activities it chains) runs in this
        thread and commits in the start's transaction, before ``start`` returns: the
        lowest start-to-result latency. Otherwise (or with a future ``start_at``) it is an
        ordinary start. See :mod:`perdure.runtime.eager`. Without it, a start made while a
        worker of this process serves the orchestration on this store object and waits for
        work is run by that worker's thread: the instance and its first turn commit together
        before ``start`` returns (:mod:`perdure.runtime.handed`).
        """
        new = self._new_instance(orchestration, input, instance_id, start_at, eager, version)
        self._start(new, replace_terminal=replace_terminal, eager=eager, request_id=request_id)
        return new.instance_id

    def run(
        self,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        timeout: float | None = None,
        instance_id: str | None = None,
        replace_terminal: bool = False,
        eager: bool = False,
        request_id: str | None = None,
        version: int | None = None,
    ) -> InstanceState:
        """Start ``orchestration`` with ``input`` and wait until the instance ends; return its
        state: ``wait(start(...), timeout)`` in one call, with the same options, errors and
        ``TimeoutError`` (after ``timeout`` seconds in all, the instance started and still
        running: ``wait`` on its id goes on waiting).

        The quickest way from a start to its result. In a process whose worker serves the
        orchestration on this store object and waits for work, the start is handed to that
        worker as with :meth:`start`, but the caller does not wake when it commits: it
        sleeps until the instance ends (or the start fails), once instead of twice. Waking
        while the worker's thread goes on to run the first activity, the caller would take
        the CPU and the GIL from it (a tenth to a fifth of a one-activity orchestration's
        time from start to result on two cores). The instance id is ``state.instance_id``.
        """
        new = self._new_instance(orchestration, input, instance_id, None, eager, version)
        start = partial(
            self._start, new, replace_terminal=replace_terminal, eager=eager, request_id=request_id, leave_running=True
        )
        return self._wait(new.instance_id, timeout, start)

    def _new_instance(
        self,
        orchestration: str | Callable[..., Any],
        input: Any,
        instance_id: str | None,
        start_at: datetime | None,
        eager: bool,
        version: int | None,
    ) -> NewInstance:
        """The checked start of a new instance (:meth:`start`'s arguments)."""
        name = self._orchestration_name(orchestration)
        version = self._version(name, version)
        iid = generated_instance_id(time.time()) if instance_id is None else validate_instance_id(instance_id)
        text = dumps_payload(input, what=f"input of orchestration {name!r}", limit=self.max_payload_bytes)
        start = timestamp(start_at, "start_at")
        if not isinstance(eager, bool):
            raise InvalidInputError(f"eager must be True or False, got {eager!r}")
        return NewInstance(
            iid,
            name,
            input,
            start_at=start,
            version=version,
            trace=capture_trace(),
            fresh_id=instance_id is None,
            input_json=text,
        )

    def _start(
        self,
        new: NewInstance,
        *,
        replace_terminal: bool,
        eager: bool,
        request_id: str | None,
        leave_running: bool = False,
    ) -> _PendingStart | None:
        """Make the start of ``new``: eagerly, handed to a worker of this process, or queued.
        ``leave_running``: a start handed over is left running, and returned (the caller
        finishes it, :meth:`_PendingStart.finish`, once it ended without running)."""
        ended_before = self.store.notifier.version(INSTANCES)
        self.store.notifier.ended.expect(new.instance_id)  # before it can end: the end hands its row to wait

        # A random id names its start as a request id would: the start records no request
        # (a row, its index entry and its WAL fewer), and a retry that finds the id taken
        # found its own first try (unless retention purged that run within the retries'
        # seconds). Not with ``replace_terminal``: the retry would replace that run.
        recorded = not (new.fresh_id and request_id is None and not replace_terminal)
        rid = _request_id(request_id, recorded)
        pending = None
        first: Callable[[], bool]
        if eager:
            first = partial(start_eagerly, self.store, new, replace_terminal=replace_terminal, request_id=rid)
        else:
            taken = hand_over(self.store, new, replace_terminal=replace_terminal, request_id=rid)
            if taken is not None and leave_running:
                pending = _PendingStart(
                    taken, partial(self._create, new, rid, recorded, replace_terminal, taken.result)
                )
            first = taken.result if taken is not None else _not_run
        if pending is None:
            self._create(new, rid, recorded, replace_terminal, first)
        if request_id is None:  # a caller's request id may be a start applied long ago
            self._remember_start(new.instance_id, ended_before)
        return pending

    def _create(
        self,
        new: NewInstance,
        request_id: str | None,
        recorded: bool,
        replace_terminal: bool,
        first: Callable[[], bool],
    ) -> None:
        """Create ``new``: ``first()`` (an eager start, or the outcome of a start handed to a
        worker of this process: whether it ran it; it raises what the start raised), else
        and on retries after the store was unavailable, a queued start."""

        def create(rid: str | None, retry: bool) -> None:
            # A retry is never eager nor handed over: if the first try committed, the store
            # knows its id.
            if not retry and first():
                return
            again = replace(new, fresh_id=False) if retry else new
            try:
                self.store.create_instances([again], replace_terminal=replace_terminal, request_id=rid)
            except InstanceExistsError:
                if recorded or not retry:
                    raise

        _idempotent(create, request_id, recorded=recorded)

    def _remember_start(self, instance_id: str, ended_before: int) -> None:
        with self._started_lock:
            self._started[instance_id] = ended_before
            self._started.move_to_end(instance_id)
            while len(self._started) > STARTS_REMEMBERED:
                self._started.popitem(last=False)

    def _version_before_start(self, instance_id: str) -> int | None:
        """The INSTANCES version read before this client started ``instance_id``, if it did
        (once: ``wait`` takes it)."""
        with self._started_lock:
            return self._started.pop(instance_id, None)

    def start_many(
        self,
        orchestration: str | Callable[..., Any],
        inputs: Iterable[Any],
        *,
        instance_ids: Iterable[str] | None = None,
        request_id: str | None = None,
        version: int | None = None,
    ) -> list[str]:
        """Start one instance of ``orchestration`` per input, all in one store transaction
        (all are created, or none); return their ids in input order. ``instance_ids`` names
        them (validated like :meth:`start`); by default they are random. ``version`` as for
        :meth:`start`."""
        name = self._orchestration_name(orchestration)
        version = self._version(name, version)
        values = list(inputs)
        if instance_ids is None:
            now = time.time()
            ids = [generated_instance_id(now) for _ in values]
        else:
            ids = [validate_instance_id(i) for i in instance_ids]
            if len(ids) != len(values):
                raise InvalidInputError(f"start_many got {len(values)} inputs but {len(ids)} instance ids")
            if len(set(ids)) != len(ids):
                raise InvalidInputError("start_many got the same instance id twice")
        texts = [
            dumps_payload(value, what=f"input {i} of orchestration {name!r}", limit=self.max_payload_bytes)
            for i, value in enumerate(values)
        ]
        trace = capture_trace()
        fresh = instance_ids is None
        new = [
            NewInstance(iid, name, value, version=version, trace=trace, fresh_id=fresh, input_json=text)
            for iid, value, text in zip(ids, values, texts, strict=True)
        ]

        def create(rid: str | None, retry: bool) -> None:
            self.store.create_instances([replace(n, fresh_id=False) for n in new] if retry else new, request_id=rid)

        _idempotent(create, request_id)
        return ids

    # -- reading --

    def get(self, instance_id: str, *, history: bool = False) -> InstanceState | None:
        """The instance's state (with its current execution's history if asked), or None."""
        record = self.store.get_instance(instance_id)
        if record is None:
            return None
        events = self._history(record, record.execution_id) if history else None
        return InstanceState.from_record(record, events)

    def history(self, instance_id: str, *, execution_id: int | None = None) -> list[HistoryEvent]:
        """The history of one execution of the instance, oldest event first: the current
        execution by default, or ``execution_id`` (1 is the first; each continue-as-new
        starts the next). Raises :class:`~perdure.errors.InstanceNotFoundError` for an
        unknown id and :class:`~perdure.errors.InvalidInputError` for an execution the
        instance does not have."""
        record = self.store.get_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        if execution_id is None:
            execution_id = record.execution_id
        elif isinstance(execution_id, bool) or not isinstance(execution_id, int):
            raise InvalidInputError(f"execution_id must be an integer, got {execution_id!r}")
        elif not 1 <= execution_id <= record.execution_id:
            raise InvalidInputError(
                f"instance {instance_id!r} has executions 1 to {record.execution_id}, not {execution_id}"
            )
        return self._history(record, execution_id)

    def wait(self, instance_id: str, timeout: float | None = None) -> InstanceState:
        """Block until the instance is terminal and return its state; raise ``TimeoutError``
        after ``timeout`` seconds (None: wait forever).

        Woken at once by commits in this process, the one that ends the instance handing
        over its row (no read), and by other processes' (on PostgreSQL the store's listener
        follows instance ends while a wait needs them, and for a minute after; the wait
        first marks its instance watched, ``Store.watch_instance``, as only the ends of
        watched instances are signalled to other processes); otherwise polls with a
        backoff from 5 ms up to 0.5 s. In a process where a worker runs on
        the same store object, a wait counts on that worker alone for its first
        :data:`LOCAL_WAIT` seconds: most of the instances its clients wait on end there,
        and hand their row over, and following other processes' ends would wake the
        listener for each of them.

        On an instance this client started (without a ``request_id`` of the caller's), it
        goes to sleep without reading first while no instance has ended since the start
        began (in this process, or in another while the listener followed instance ends:
        its subscriptions move the version as they begin and end), unless it has yet to
        mark the instance watched.
        """
        return self._wait(instance_id, timeout)

    def _wait(
        self, instance_id: str, timeout: float | None, start: Callable[[], _PendingStart | None] | None = None
    ) -> InstanceState:
        """:meth:`wait`; for :meth:`run`, ``start`` makes the start once the wait is ready to
        sleep (a worker's thread woken by a start handed over then finds the GIL free).
        While the start it returns, handed to a worker of this process, has not ended, the
        instance may not exist yet, and a start that ends without running is finished here
        (queued, or its error raised)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        notifier = self.store.notifier
        delay = 0.005
        with notifier.ended.waiting(instance_id) as handed, contextlib.ExitStack() as following:
            follow_at = time.monotonic() + LOCAL_WAIT if served_here(self.store) else None
            if follow_at is None:  # before the version is compared: a subscription moves it
                following.enter_context(notifier.following(INSTANCES))
            # Relying on other processes' signals, the wait first marks the instance watched
            # (a store signals to other processes only the ends of watched instances).
            watched = False
            pending = None if start is None else start()
            before = self._version_before_start(instance_id)
            unchanged = before if before is not None and notifier.version(INSTANCES) == before else None
            while True:
                unrun = notifier.version(UNRUN_STARTS)  # before the start is looked at: no signal lost
                if pending is not None and pending.ended:
                    pending.finish()  # raises what the start raised; queues a start given back
                    pending = None
                remaining = None if deadline is None else deadline - time.monotonic()
                if (
                    unchanged is not None
                    and (remaining is None or remaining > 0)
                    and (follow_at is not None or watched)
                ):
                    # Started here and nothing ended since: no need to look before waiting.
                    seen, unchanged = {INSTANCES: unchanged, UNRUN_STARTS: unrun}, None
                elif (ended := handed()) is not None:
                    return InstanceState.from_record(ended)  # the commit that ended it handed it over
                else:
                    if follow_at is not None and time.monotonic() >= follow_at:
                        # Before the snapshot: a subscription moves the version.
                        following.enter_context(notifier.following(INSTANCES))
                        follow_at = None
                    seen = {**notifier.snapshot((INSTANCES,)), UNRUN_STARTS: unrun}
                    if follow_at is None and not watched:
                        record = self.store.watch_instance(instance_id)
                        watched = record is not None
                    else:
                        record = self.store.get_instance(instance_id)
                    if record is None and pending is None:
                        raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
                    if record is not None and record.status.is_terminal:
                        return InstanceState.from_record(record)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        if pending is not None:  # a transaction away: the start's own error comes first
                            pending.handed.done.wait()
                            pending.finish()
                            record = self.store.get_instance(instance_id)
                        status = "not started" if record is None else record.status.value
                        raise TimeoutError(f"instance {instance_id!r} is still {status} after {timeout:g} s")
                topics = (INSTANCES,) if pending is None else (INSTANCES, UNRUN_STARTS)
                notifier.wait(topics, seen, delay if remaining is None else min(delay, remaining))
                delay = min(delay * 2, 0.5)

    def list(
        self,
        *,
        status: StatusArg = None,
        name: str | None = None,
        prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        parent_instance_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        sort: str = "created",
        version: int | None = None,
    ) -> InstancePage:
        """One page of instances, newest first, filtered by status (one or several), name,
        orchestration ``version``, creation time, parent and instance-id ``prefix``; pass the returned
        ``next_cursor`` for the next page. ``sort="updated"`` orders by last update instead
        of creation (most recently updated first)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInputError(f"limit must be an integer from 1 to 10000, got {limit!r}")
        if sort not in ("created", "updated"):
            raise InvalidInputError(f"sort must be 'created' or 'updated', got {sort!r}")
        found = InstanceFilter(status, name, created_after, created_before, prefix, version)
        query = found.query(limit=limit, cursor=cursor)
        assert query is not None  # no status restriction was asked for
        query = replace(query, parent_instance_id=parent_instance_id, sort=sort)
        page = self.store.list_instances(query)
        return InstancePage([InstanceState.from_record(r) for r in page.items], page.next_cursor)

    def count(self, filter: InstanceFilter | None = None) -> int:
        """How many instances match ``filter`` (every instance by default). Reads the
        matching ids page by page; nothing is held in memory but one page."""
        return sum(len(records) for records in self._pages(filter or InstanceFilter(), None))

    def workers(self, *, alive_within: float | None = None) -> list[WorkerRecord]:
        """The workers' heartbeat rows (registered names, concurrency and load), only those
        with a heartbeat in the last ``alive_within`` seconds if given. A worker removes its
        row when it stops; a crashed one's row stays, with its heartbeat aging, until the
        retention sweep forgets it."""
        if alive_within is not None and (
            isinstance(alive_within, bool) or not isinstance(alive_within, (int, float)) or alive_within < 0
        ):
            raise InvalidInputError(f"alive_within must be a number of seconds >= 0, got {alive_within!r}")
        return self.store.list_workers(alive_within=alive_within)

    def queue_depths(self) -> list[QueueDepth]:
        """The queues per orchestration and activity name: how many messages or tasks are
        queued, how many are due now, and how long the oldest due one has waited."""
        return self.store.queue_depths()

    def queue_stats(self) -> QueueStats:
        """Depth and age of the queues as a whole, and how many messages are dead-lettered."""
        return self.store.queue_stats()

    # -- messages to an instance (processed in turn order, invariant 5) --

    def raise_event(self, instance_id: str, name: str, data: Any = None, *, request_id: str | None = None) -> None:
        """Deliver external event ``name`` with ``data`` to the instance's current run.
        Events raised before the orchestration waits for them are kept and handed to the
        next wait on that name."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"event name must be a non-empty string, got {name!r}")
        dumps_payload(data, what=f"data of event {name!r}", limit=self.max_payload_bytes)
        event = EventRaised(name=name, input=data, timestamp=self._clock())
        self._send(instance_id, event, "raise an event to", request_id)

    def terminate(self, instance_id: str, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Terminate the instance's current run and, recursively, its unfinished
        sub-orchestrations (only its own children: an instance that merely holds an id it
        asked for is never touched). Work already running finishes but its results are
        discarded. ``reason`` is recorded in the history and becomes the instance's
        :attr:`InstanceState.termination_reason`."""
        event = ExecutionTerminated(reason=_reason(reason), timestamp=self._clock())
        self._send(instance_id, event, "terminate", request_id)

    def suspend(self, instance_id: str, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Suspend the instance: messages that arrive are kept but not acted on until
        :meth:`resume`."""
        event = ExecutionSuspended(reason=_reason(reason), timestamp=self._clock())
        self._send(instance_id, event, "suspend", request_id)

    def resume(self, instance_id: str, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Resume a suspended instance; messages kept meanwhile are applied in arrival order."""
        event = ExecutionResumed(reason=_reason(reason), timestamp=self._clock())
        self._send(instance_id, event, "resume", request_id)

    def purge(self, instance_id: str) -> None:
        """Delete a terminal instance with its history (every run's), leftover messages,
        dead letters and discard records; for an id with no instance (purged, or never
        created), delete what was left behind under it (dead letters, discard records,
        queued messages)."""
        state = self.get(instance_id)
        if state is not None and not state.is_terminal:
            raise InstanceStateError(
                f"instance {instance_id!r} is {state.status.value}; only completed, failed or "
                f"terminated instances can be purged (terminate it first)"
            )
        if not self.store.purge_instances([instance_id]) and state is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}, and nothing stored under that id")

    # -- runs made live again, or anew --

    def rewind(self, instance_id: str, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Resume a FAILED instance from the point of failure: the turn that failed is undone
        (its history stays, marked by an ``ExecutionRewound`` record that replay skips), the
        messages it had taken are queued again, the failed activity is scheduled again and
        a failed child is rewound too (or started again, if it cannot be), and everything
        before is kept. The instance replays on the code the workers run now, so a failure
        that came from a bug (a nondeterminism error after a bad deploy, say) is rewound
        once the code is fixed or rolled back. Raises
        :class:`~perdure.errors.InstanceStateError` for an instance that is not FAILED."""
        reason = _reason(reason)
        record = self.store.get_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        if record.status is not OrchestrationStatus.FAILED:
            raise InstanceStateError(
                f"cannot rewind instance {instance_id!r}: it is {record.status.value}; only a FAILED instance "
                f"can be rewound"
            )
        history = self._history(record, record.execution_id)
        batch = run_operations.rewinds(self.store, record, history, reason=reason, now=self._clock())
        _idempotent(lambda rid, _retry: self.store.rewind(batch, request_id=rid), request_id)

    def restart(
        self,
        instance_id: str,
        new_instance_id: str | None = None,
        *,
        version: int | None = None,
        request_id: str | None = None,
    ) -> str:
        """Start the orchestration of ``instance_id`` again with the input of its current
        execution (for an instance that continued as new, the input of its latest
        execution): as a new run of the same id when ``new_instance_id`` is None (the
        instance must have ended; the old run's history stays readable until purged), or as
        a new instance ``new_instance_id``. Return the id of the started instance. The run
        records where it came from (``ExecutionStarted.origin``); it starts as a top-level
        instance, and runs ``version`` (by default the latest, as :meth:`start`)."""
        record = self.store.get_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        in_place = new_instance_id is None
        if in_place and not record.status.is_terminal:
            raise InstanceStateError(
                f"cannot restart instance {instance_id!r} in place: it is {record.status.value}; terminate it "
                f"first, or restart it under a new_instance_id"
            )
        target = instance_id if new_instance_id is None else validate_instance_id(new_instance_id)
        origin = RunOrigin("restart", instance_id, record.run_id, record.execution_id)
        new = NewInstance(
            target,
            record.name,
            record.input,
            version=self._version(record.name, version),
            origin=origin,
            replaces_run=record.run_id if in_place else None,
        )
        create = self.store.create_instances
        _idempotent(lambda rid, _retry: create([new], replace_terminal=in_place, request_id=rid), request_id)
        return target

    def reset(self, instance_id: str, to_turn: int, *, reason: str | None = None, request_id: str | None = None) -> str:
        """Start a new run of ``instance_id`` (which must have ended) whose history is the
        current execution's up to the end of turn ``to_turn`` (turns are numbered from 1, as
        ``perdure history`` shows them), and which continues live from there: what those
        turns scheduled and the rest never received runs again (activities, timers; a
        child still running is re-attached, one that completed gives its result again, any
        other is started again), and the external events that came after that turn are
        delivered again. The old run's history stays readable until purged. Return the new
        run's token."""
        reason = _reason(reason)
        record = self.store.get_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        if not record.status.is_terminal:
            raise InstanceStateError(
                f"cannot reset instance {instance_id!r}: it is {record.status.value}; terminate it first"
            )
        history = self._history(record, record.execution_id)
        plan = run_operations.reset(record, history, to_turn, reason=reason)
        _idempotent(lambda rid, _retry: self.store.reset(plan, request_id=rid), request_id)
        return plan.run_id

    # -- bulk operations: page by page, one store write per page --

    def terminate_where(self, filter: InstanceFilter, reason: str | None = None, *, dry_run: bool = False) -> int:
        """Terminate every live (PENDING, RUNNING or SUSPENDED) instance matching ``filter``
        as :meth:`terminate` does; return how many were asked to terminate. With
        ``dry_run=True`` only count them."""
        text = _reason(reason)
        return self._bulk(filter, _LIVE, dry_run, lambda: ExecutionTerminated(reason=text, timestamp=self._clock()))

    def suspend_where(self, filter: InstanceFilter, reason: str | None = None, *, dry_run: bool = False) -> int:
        """Suspend every PENDING or RUNNING instance matching ``filter``; return how many
        (with ``dry_run=True`` only count them)."""
        text = _reason(reason)
        only = {OrchestrationStatus.PENDING, OrchestrationStatus.RUNNING}
        return self._bulk(filter, only, dry_run, lambda: ExecutionSuspended(reason=text, timestamp=self._clock()))

    def resume_where(self, filter: InstanceFilter, reason: str | None = None, *, dry_run: bool = False) -> int:
        """Resume every SUSPENDED instance matching ``filter``; return how many (with
        ``dry_run=True`` only count them)."""
        text = _reason(reason)
        only = {OrchestrationStatus.SUSPENDED}
        return self._bulk(filter, only, dry_run, lambda: ExecutionResumed(reason=text, timestamp=self._clock()))

    def rewind_where(self, filter: InstanceFilter, reason: str | None = None, *, dry_run: bool = False) -> int:
        """Rewind every FAILED instance matching ``filter`` (:meth:`rewind`), one at a time;
        return how many were rewound (with ``dry_run=True``, how many would be). One that
        changed meanwhile (rewound by someone else, purged) is skipped."""
        if not isinstance(filter, InstanceFilter):
            raise InvalidInputError(f"filter must be a perdure.InstanceFilter, got {type(filter).__name__}")
        reason = _reason(reason)
        total = 0
        for records in self._pages(filter, {OrchestrationStatus.FAILED}):
            for record in records:
                if not dry_run:
                    try:
                        self.rewind(record.instance_id, reason)
                    except (InstanceStateError, InstanceNotFoundError):
                        continue
                total += 1
        return total

    def purge_where(self, filter: InstanceFilter, *, dry_run: bool = False) -> int:
        """Delete every terminal (COMPLETED, FAILED or TERMINATED) instance matching
        ``filter`` with its history; return how many were deleted (with ``dry_run=True``,
        how many would be)."""
        if not isinstance(filter, InstanceFilter):
            raise InvalidInputError(f"filter must be a perdure.InstanceFilter, got {type(filter).__name__}")
        total = 0
        for records in self._pages(filter, TERMINAL_STATUSES):
            total += len(records) if dry_run else self.store.purge_instances([r.instance_id for r in records])
        query = filter.query(only=None, limit=1, cursor=None)
        if not dry_run and query is not None and purges_orphans(query):
            # What ids without an instance left behind (dead letters, discard records).
            total += self.store.purge_where(query)
        return total

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

    def _orchestration_name(self, orchestration: str | Callable[..., Any]) -> str:
        name = registered_name(orchestration, "orchestration")
        if self.app is not None and name not in self.app.orchestrations:
            known = ", ".join(sorted(self.app.orchestrations)) or "none"
            raise RegistrationError(f"orchestration {name!r} is not registered in the app (registered: {known})")
        return name

    def _version(self, name: str, version: int | None) -> int | None:
        """The version a start of ``name`` runs: ``version`` (checked against the app, if
        the client has one), else the app's latest; without an app, ``None`` (the worker's
        latest)."""
        if version is not None:
            check_version(version)
        if self.app is None:
            return version
        return self.app.orchestration_named(name, version).version

    def _history(self, record: InstanceRecord, execution_id: int) -> list[HistoryEvent]:
        iid = record.instance_id
        try:
            records = self.store.get_history(iid, execution_id=execution_id)
        except EventDecodeError as exc:
            raise EventDecodeError(f"the history of instance {iid!r} cannot be read: {exc}") from exc
        return [r.event for r in records]

    def _require(self, instance_id: str) -> InstanceState:
        state = self.get(instance_id)
        if state is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
        return state

    def _send(self, instance_id: str, event: HistoryEvent, verb: str, request_id: str | None) -> None:
        state = self._require(instance_id)
        if state.is_terminal:
            raise InstanceStateError(f"cannot {verb} instance {instance_id!r}: it is already {state.status.value}")
        # execution_id=None: operator messages go to whichever execution of the run is
        # current when they are delivered, so none is lost across continue-as-new; run_id:
        # never to a later run of the id (invariant 9).
        message = Message(instance_id, event, run_id=state.run_id)
        _idempotent(lambda rid, _retry: self.store.enqueue_messages([message], request_id=rid), request_id)

    def _pages(
        self, filter: InstanceFilter, only: Collection[OrchestrationStatus] | None
    ) -> Iterator[list[InstanceRecord]]:
        """The instances matching ``filter`` (and with a status in ``only``), one page at a
        time. The cursor is the last row's sort key, so a page acted on (purged,
        terminated) never shifts the pages after it."""
        cursor = None
        while True:
            query = filter.query(only=only, limit=_BULK_PAGE, cursor=cursor)
            if query is None:
                return
            page = self.store.list_instances(query)
            if page.items:
                yield page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _bulk(
        self,
        filter: InstanceFilter,
        only: Collection[OrchestrationStatus],
        dry_run: bool,
        event: Callable[[], HistoryEvent],
    ) -> int:
        """Send ``event()`` to each matching instance, one store write per page; an instance
        that ends meanwhile records the message as discarded, as for a single call."""
        if not isinstance(filter, InstanceFilter):
            raise InvalidInputError(f"filter must be a perdure.InstanceFilter, got {type(filter).__name__}")
        total = 0
        for records in self._pages(filter, only):
            if not dry_run:  # each to the run the listing saw (invariant 9)
                self.store.enqueue_messages([Message(r.instance_id, event(), run_id=r.run_id) for r in records])
            total += len(records)
        return total


def _request_id(request_id: str | None, recorded: bool = True) -> str | None:
    """The caller's request id, checked, or a new one if the write is ``recorded`` (None if
    it is named otherwise: a start's random instance id)."""
    if request_id is None:
        return uuid.uuid4().hex if recorded else None
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidInputError(
            f"request_id must be a non-empty string of at most {MAX_REQUEST_ID_LENGTH} characters, got {request_id!r}"
        )
    return request_id


def _not_run() -> bool:
    return False


@dataclass(slots=True)
class _PendingStart:
    """A start handed to a worker of this process that :meth:`Client.run` does not wait
    for; ``create`` does what :meth:`Client.start` does with it once it ended (queue it if
    given back, raise what it raised)."""

    handed: HandedStart
    create: Callable[[], None]

    @property
    def ended(self) -> bool:
        """Whether the worker ran it, failed it or gave it back."""
        return self.handed.done.is_set()

    def finish(self) -> None:
        """Once it ended: nothing if it ran, else what :meth:`Client.start` does."""
        if not self.handed.ran:
            self.create()


def _idempotent(call: Callable[[str | None, bool], T], request_id: str | None, *, recorded: bool = True) -> T:
    """Run ``call(request_id, retry)``, trying again with the same request id after the
    store was unavailable (the write may have committed: the store applies an id once).
    Not ``recorded``: the write is named otherwise (a start's random instance id), and
    ``call`` gets no request id."""
    request_id = _request_id(request_id, recorded)
    for attempt, delay in enumerate((*RETRY_DELAYS, None)):
        try:
            return call(request_id, attempt > 0)
        except StoreUnavailableError:
            if delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(reason: str | None) -> str | None:
    if reason is not None and not isinstance(reason, str):
        raise InvalidInputError(f"reason must be a string, got {type(reason).__name__}")
    return reason


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, as coroutines. Store calls run
    in a thread so the event loop is never blocked. Options (``app``,
    ``max_payload_bytes``) as for :class:`Client`."""

    def __init__(self, store: Store, **options: Any) -> None:
        self.sync = Client(store, **options)

    async def start(self, orchestration: str | Callable[..., Any], input: Any = None, **kwargs: Any) -> str:
        """See :meth:`Client.start`."""
        return await asyncio.to_thread(self.sync.start, orchestration, input, **kwargs)

    async def run(self, orchestration: str | Callable[..., Any], input: Any = None, **kwargs: Any) -> InstanceState:
        """See :meth:`Client.run`."""
        return await asyncio.to_thread(self.sync.run, orchestration, input, **kwargs)

    async def start_many(
        self, orchestration: str | Callable[..., Any], inputs: Iterable[Any], **kwargs: Any
    ) -> list[str]:
        """See :meth:`Client.start_many`."""
        return await asyncio.to_thread(self.sync.start_many, orchestration, inputs, **kwargs)

    async def get(self, instance_id: str, *, history: bool = False) -> InstanceState | None:
        """See :meth:`Client.get`."""
        return await asyncio.to_thread(self.sync.get, instance_id, history=history)

    async def history(self, instance_id: str, *, execution_id: int | None = None) -> list[HistoryEvent]:
        """See :meth:`Client.history`."""
        return await asyncio.to_thread(self.sync.history, instance_id, execution_id=execution_id)

    async def wait(self, instance_id: str, timeout: float | None = None) -> InstanceState:
        """See :meth:`Client.wait`."""
        return await asyncio.to_thread(self.sync.wait, instance_id, timeout)

    async def list(self, **filters: Any) -> InstancePage:
        """See :meth:`Client.list`."""
        return await asyncio.to_thread(self.sync.list, **filters)

    async def count(self, filter: InstanceFilter | None = None) -> int:
        """See :meth:`Client.count`."""
        return await asyncio.to_thread(self.sync.count, filter)

    async def workers(self, *, alive_within: float | None = None) -> list[WorkerRecord]:
        """See :meth:`Client.workers`."""
        return await asyncio.to_thread(self.sync.workers, alive_within=alive_within)

    async def queue_depths(self) -> list[QueueDepth]:
        """See :meth:`Client.queue_depths`."""
        return await asyncio.to_thread(self.sync.queue_depths)

    async def raise_event(self, instance_id: str, name: str, data: Any = None, **kwargs: Any) -> None:
        """See :meth:`Client.raise_event`."""
        await asyncio.to_thread(self.sync.raise_event, instance_id, name, data, **kwargs)

    async def terminate(self, instance_id: str, reason: str | None = None, **kwargs: Any) -> None:
        """See :meth:`Client.terminate`."""
        await asyncio.to_thread(self.sync.terminate, instance_id, reason, **kwargs)

    async def suspend(self, instance_id: str, reason: str | None = None, **kwargs: Any) -> None:
        """See :meth:`Client.suspend`."""
        await asyncio.to_thread(self.sync.suspend, instance_id, reason, **kwargs)

    async def resume(self, instance_id: str, reason: str | None = None, **kwargs: Any) -> None:
        """See :meth:`Client.resume`."""
        await asyncio.to_thread(self.sync.resume, instance_id, reason, **kwargs)

    async def purge(self, instance_id: str) -> None:
        """See :meth:`Client.purge`."""
        await asyncio.to_thread(self.sync.purge, instance_id)

    async def rewind(self, instance_id: str, reason: str | None = None, **kwargs: Any) -> None:
        """See :meth:`Client.rewind`."""
        await asyncio.to_thread(self.sync.rewind, instance_id, reason, **kwargs)

    async def restart(self, instance_id: str, new_instance_id: str | None = None, **kwargs: Any) -> str:
        """See :meth:`Client.restart`."""
        return await asyncio.to_thread(self.sync.restart, instance_id, new_instance_id, **kwargs)

    async def reset(self, instance_id: str, to_turn: int, **kwargs: Any) -> str:
        """See :meth:`Client.reset`."""
        return await asyncio.to_thread(self.sync.reset, instance_id, to_turn, **kwargs)

    async def terminate_where(self, filter: InstanceFilter, reason: str | None = None, **kwargs: Any) -> int:
        """See :meth:`Client.terminate_where`."""
        return await asyncio.to_thread(self.sync.terminate_where, filter, reason, **kwargs)

    async def suspend_where(self, filter: InstanceFilter, reason: str | None = None, **kwargs: Any) -> int:
        """See :meth:`Client.suspend_where`."""
        return await asyncio.to_thread(self.sync.suspend_where, filter, reason, **kwargs)

    async def resume_where(self, filter: InstanceFilter, reason: str | None = None, **kwargs: Any) -> int:
        """See :meth:`Client.resume_where`."""
        return await asyncio.to_thread(self.sync.resume_where, filter, reason, **kwargs)

    async def rewind_where(self, filter: InstanceFilter, reason: str | None = None, **kwargs: Any) -> int:
        """See :meth:`Client.rewind_where`."""
        return await asyncio.to_thread(self.sync.rewind_where, filter, reason, **kwargs)

    async def purge_where(self, filter: InstanceFilter, **kwargs: Any) -> int:
        """See :meth:`Client.purge_where`."""
        return await asyncio.to_thread(self.sync.purge_where, filter, **kwargs)

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
