"""History events: the event-sourced record of one orchestration execution.

Every event is a frozen, slotted dataclass with keyword-only fields. ``timestamp`` is the
wall-clock time (UTC epoch seconds) at which the runtime or the store created the event;
the core never reads a clock, it only copies timestamps from events it is given.

Scheduled work is matched by ``task_id``: a sequence number the context issues when the
orchestrator creates a task (activity, timer, sub-orchestration). The scheduling event and
the completion event carry the same id, so replay matches them with a dictionary lookup.

The same event types double as the *messages* delivered to an orchestration: an
``ActivityCompleted`` is enqueued by the activity worker and, when a turn consumes it, is
appended to history unchanged. Messages are: ``ExecutionStarted``, ``ActivityCompleted``,
``ActivityFailed``, ``TimerFired``, ``SubOrchestrationCompleted``,
``SubOrchestrationFailed``, ``EventRaised``, ``ExecutionTerminated``,
``ExecutionSuspended`` and ``ExecutionResumed``.

Stored form (see :func:`encode_event`): a JSON object with ``"v"`` (format version),
``"kind"`` (the class name) and the fields; unknown fields are ignored on read so that
newer writers can add fields without breaking older readers.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from perdure.core.failure import Failure
from perdure.core.payload import compact_json
from perdure.core.records import frozen_record
from perdure.errors import SerializationError

EVENT_FORMAT_VERSION = 1


@frozen_record
class ParentRef:
    """Where a sub-orchestration reports back: the parent instance, the parent *run* (its
    run token, invariant 9), the parent *execution* that scheduled it (stamped at schedule
    time, invariant 4) and the parent's task id.

    ``run_id`` is ``None`` only in references recorded before runs had tokens; such a
    reference matches any run of the parent."""

    instance_id: str
    execution_id: int
    task_id: int
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        data: dict[str, Any] = {
            "instance_id": self.instance_id,
            "execution_id": self.execution_id,
            "task_id": self.task_id,
        }
        if self.run_id is not None:
            data["run_id"] = self.run_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParentRef:
        """Read the JSON form."""
        run_id = data.get("run_id")
        return cls(
            str(data["instance_id"]),
            int(data["execution_id"]),
            int(data["task_id"]),
            None if run_id is None else str(run_id),
        )

    def is_task(self, other: ParentRef) -> bool:
        """Whether ``other`` names the same parent task: the same instance, execution and
        task, and the same run (a reference without a run token matches any run)."""
        return (
            self.instance_id == other.instance_id
            and self.execution_id == other.execution_id
            and self.task_id == other.task_id
            and (self.run_id is None or other.run_id is None or self.run_id == other.run_id)
        )


@frozen_record
class RunOrigin:
    """Where an operator made a run from (:attr:`ExecutionStarted.origin`): ``kind`` is
    ``"restart"`` (a new run with the same input) or ``"reset"`` (a new run whose history is
    the source's up to the end of ``turn``); the source instance, run and execution; the
    operator's ``reason``. ``seed_execution`` is the execution whose deterministic helpers
    (``ctx.new_uuid``, ``ctx.random``) a reset run continues, so its copied turns replay
    with the values they had."""

    kind: str
    instance_id: str
    run_id: str
    execution_id: int
    turn: int | None = None
    reason: str | None = None
    seed_execution: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (unset fields left out)."""
        data: dict[str, Any] = {
            "kind": self.kind,
            "instance_id": self.instance_id,
            "run_id": self.run_id,
            "execution_id": self.execution_id,
        }
        for name in ("turn", "reason", "seed_execution"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunOrigin:
        """Read the JSON form."""
        return cls(
            str(data["kind"]),
            str(data["instance_id"]),
            str(data["run_id"]),
            int(data["execution_id"]),
            data.get("turn"),
            data.get("reason"),
            data.get("seed_execution"),
        )


@frozen_record(kw_only=True)
class HistoryEvent:
    """Base of all history events."""

    timestamp: float = 0.0


# --- lifecycle -------------------------------------------------------------------------


@frozen_record(kw_only=True)
class ExecutionStarted(HistoryEvent):
    """First event of every execution. ``execution_id`` counts 1, 2, ... across continue-as-new.

    ``run_id`` is the run token of the instance (invariant 9): the same for every execution
    of one run, new for each run of an instance id (a start after a purge, a
    ``replace_terminal`` start, a child's retry). ``None`` in histories recorded before runs
    had tokens.

    ``carried`` are the messages the previous execution received but did not act on when it
    continued as new (unconsumed external events, and operator messages that came in the
    same turn), in arrival order: the new execution takes them before anything else, so
    they keep their place ahead of messages that arrive later (invariant 5).

    ``version`` is the version of the orchestration the execution runs (1 in histories
    recorded before versions). As a message it may be ``None``: "the latest version of the
    worker that takes the first turn", which records the version it chose.

    ``origin`` says which run an operator made this one from (a restart or a reset).

    ``trace`` is the trace context the run belongs to, as a W3C propagation carrier
    (``traceparent``, ``tracestate``): the caller's, captured by the client at the start; a
    child run and the next execution of a continue-as-new carry their run's on. Opaque to
    the engine; ``None`` when nothing was captured (see :mod:`perdure.observability`).
    """

    name: str
    input: Any = None
    execution_id: int = 1
    parent: ParentRef | None = None
    run_id: str | None = None
    carried: tuple[HistoryEvent, ...] = ()
    version: int | None = 1
    origin: RunOrigin | None = None
    trace: dict[str, str] | None = None


@frozen_record(kw_only=True)
class TurnStarted(HistoryEvent):
    """Opens every turn; its ``timestamp`` is what ``ctx.now()`` returns during the turn."""


@frozen_record(kw_only=True)
class ExecutionCompleted(HistoryEvent):
    """The orchestrator returned ``result``."""

    result: Any = None


@frozen_record(kw_only=True)
class ExecutionFailed(HistoryEvent):
    """The orchestrator raised, or the engine failed the instance (nondeterminism, missing
    registration, corrupt history)."""

    failure: Failure


@frozen_record(kw_only=True)
class ExecutionTerminated(HistoryEvent):
    """Terminated by an operator (as a message: the request to terminate).

    A terminate that cascades from a parent names that parent task in ``parent``: it applies
    only to an instance whose own recorded parent is that task (invariant 9), never to an
    unrelated instance that happens to hold the id."""

    reason: str | None = None
    parent: ParentRef | None = None


@frozen_record(kw_only=True)
class ContinuedAsNew(HistoryEvent):
    """This execution ended and execution ``execution_id + 1`` starts with ``input``."""

    input: Any = None


@frozen_record(kw_only=True)
class ExecutionSuspended(HistoryEvent):
    """Suspended by an operator: messages are kept in history but not acted on until resumed."""

    reason: str | None = None


@frozen_record(kw_only=True)
class ExecutionResumed(HistoryEvent):
    """Resumed by an operator: buffered messages are acted on, in arrival order."""

    reason: str | None = None


# --- activities ------------------------------------------------------------------------


@frozen_record(kw_only=True)
class ActivityScheduled(HistoryEvent):
    """The orchestrator called an activity; ``attempt`` counts retries from 1.

    ``max_attempts`` is the retry policy's ``max_attempts`` when the call has one, ``None``
    for a call without retry policy (and in histories written before the field existed); it
    is a record for diagnosis ("attempt 2 of 5"), not compared on replay.
    """

    task_id: int
    name: str
    input: Any = None
    attempt: int = 1
    max_attempts: int | None = None


@frozen_record(kw_only=True)
class ActivityCompleted(HistoryEvent):
    """The activity with ``task_id`` returned ``result``."""

    task_id: int
    result: Any = None


@frozen_record(kw_only=True)
class ActivityFailed(HistoryEvent):
    """The activity with ``task_id`` raised."""

    task_id: int
    failure: Failure


# --- timers ----------------------------------------------------------------------------


@frozen_record(kw_only=True)
class TimerCreated(HistoryEvent):
    """A durable timer due at ``fire_at`` (UTC epoch seconds)."""

    task_id: int
    fire_at: float


@frozen_record(kw_only=True)
class TimerFired(HistoryEvent):
    """The timer with ``task_id`` came due."""

    task_id: int
    fire_at: float = 0.0


# --- sub-orchestrations ----------------------------------------------------------------


@frozen_record(kw_only=True)
class SubOrchestrationCreated(HistoryEvent):
    """The orchestrator started child ``instance_id`` running orchestration ``name``."""

    task_id: int
    name: str
    instance_id: str
    input: Any = None


@frozen_record(kw_only=True)
class SubOrchestrationCompleted(HistoryEvent):
    """The child scheduled as ``task_id`` completed with ``result``."""

    task_id: int
    result: Any = None


@frozen_record(kw_only=True)
class SubOrchestrationFailed(HistoryEvent):
    """The child scheduled as ``task_id`` failed, was terminated, or could not start."""

    task_id: int
    failure: Failure


# --- patches ---------------------------------------------------------------------------


@frozen_record(kw_only=True)
class PatchMarker(HistoryEvent):
    """The orchestrator called ``ctx.patched(patch_id)`` live (or ``ctx.deprecate_patch``,
    then ``deprecated``): from here on this execution takes the patched code path. Replay
    checks the marker like any other command; a deprecated marker that the code no longer
    asks for is skipped instead."""

    patch_id: str
    deprecated: bool = False


# --- external events, status, records --------------------------------------------------


@frozen_record(kw_only=True)
class EventRaised(HistoryEvent):
    """An external event ``name`` with payload ``input`` arrived."""

    name: str
    input: Any = None


@frozen_record(kw_only=True)
class CustomStatusSet(HistoryEvent):
    """The orchestrator called ``ctx.set_custom_status(status)``."""

    status: Any = None


@frozen_record(kw_only=True)
class ExecutionRewound(HistoryEvent):
    """A record: an operator rewound the failed execution (``client.rewind``). The events from
    history index ``undone_from`` up to this record, the turn that failed, no longer count:
    replay skips them, and the messages that turn had taken were queued again. ``failure``
    is the failure undone, ``reason`` the operator's."""

    undone_from: int
    failure: Failure | None = None
    reason: str | None = None


@frozen_record(kw_only=True)
class MessageDiscarded(HistoryEvent):
    """A delivered message was not applied; ``reason`` says why (see :class:`DiscardReason`)
    and ``message`` holds the discarded event in its stored form."""

    reason: str
    message: dict[str, Any]
    detail: str | None = None


class DiscardReason:
    """Why a message was discarded instead of applied (invariant 3)."""

    DUPLICATE = "duplicate"  # a second completion for a task already completed
    UNKNOWN_TASK = "unknown_task"  # a completion for a task this execution never scheduled
    STALE_EXECUTION = "stale_execution"  # addressed to an execution that has ended
    TERMINAL_INSTANCE = "terminal_instance"  # the instance is completed, failed or terminated
    AFTER_COMPLETION = "after_completion"  # arrived in the turn that ended the execution
    STALE_RUN = "stale_run"  # addressed to an earlier run of the instance id (invariant 9)
    NOT_A_CHILD = "not_a_child"  # a cascading terminate for an instance that is not that parent's child


# --- codec -----------------------------------------------------------------------------

EVENT_TYPES: dict[str, type[HistoryEvent]] = {
    cls.__name__: cls
    for cls in (
        ExecutionStarted,
        TurnStarted,
        ExecutionCompleted,
        ExecutionFailed,
        ExecutionTerminated,
        ContinuedAsNew,
        ExecutionSuspended,
        ExecutionResumed,
        ActivityScheduled,
        ActivityCompleted,
        ActivityFailed,
        TimerCreated,
        TimerFired,
        SubOrchestrationCreated,
        SubOrchestrationCompleted,
        SubOrchestrationFailed,
        PatchMarker,
        EventRaised,
        CustomStatusSet,
        ExecutionRewound,
        MessageDiscarded,
    )
}

_FIELD_NAMES: dict[type[HistoryEvent], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in EVENT_TYPES.values()
}


#: Fields added after the format's first version, with their unset value: an unset one is
#: not written, so the stored form of an event that does not use it is unchanged.
_OPTIONAL_FIELDS: dict[type[HistoryEvent], dict[str, Any]] = {
    ExecutionStarted: {"run_id": None, "carried": (), "version": 1, "origin": None, "trace": None},
    ExecutionTerminated: {"parent": None},
    PatchMarker: {"deprecated": False},
}


class EventDecodeError(ValueError):
    """A stored event could not be read (corrupt JSON, unknown kind, missing field)."""


@frozen_record(kw_only=True)
class UndecodableEvent(HistoryEvent):
    """Stands in for a stored message this version cannot decode (written by a newer
    version, or damaged), where a queue, a dead letter or a discard record is read. It is
    never delivered to an orchestration nor written: ``text`` is the stored JSON as it is,
    ``error`` says what could not be read."""

    text: str
    error: str


def encode_event(event: HistoryEvent) -> dict[str, Any]:
    """The stored (JSON-ready) form of ``event``."""
    data: dict[str, Any] = {"v": EVENT_FORMAT_VERSION, "kind": type(event).__name__}
    optional = _OPTIONAL_FIELDS.get(type(event), {})
    for name in _FIELD_NAMES[type(event)]:
        value = getattr(event, name)
        if name in optional and value == optional[name]:
            continue  # left out while unset: histories stay as they were before the field
        if isinstance(value, (Failure, ParentRef, RunOrigin)):
            value = value.to_dict()
        elif name == "carried":
            value = [encode_event(e) for e in value]
        data[name] = value
    return data


def decode_event(data: dict[str, Any]) -> HistoryEvent:
    """Rebuild an event from its stored form; unknown fields are ignored."""
    try:
        cls = EVENT_TYPES[data["kind"]]
        names = _FIELD_NAMES[cls]
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("failure") is not None:
            kwargs["failure"] = Failure.from_dict(kwargs["failure"])
        if kwargs.get("origin") is not None:
            kwargs["origin"] = RunOrigin.from_dict(kwargs["origin"])
        if kwargs.get("parent") is not None:
            kwargs["parent"] = ParentRef.from_dict(kwargs["parent"])
        if "carried" in kwargs:
            kwargs["carried"] = tuple(decode_event(e) for e in kwargs["carried"])
        return cls(**kwargs)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EventDecodeError(f"cannot decode history event {str(data)[:200]}: {exc!r}") from exc


def dumps_event(event: HistoryEvent) -> str:
    """``event`` as a compact JSON string."""
    return compact_json(encode_event(event))


#: Stands for a field's value while the rest of an event is encoded: JSON escapes its NULs,
#: so only a string holding this very text could encode the same.
_SPLICED = "\x00perdure: a value encoded already\x00"
_SPLICED_JSON = compact_json(_SPLICED)


def dumps_event_with(event: HistoryEvent, name: str, text: str) -> str:
    """:func:`dumps_event`, with field ``name`` written as ``text``: its value's compact
    JSON, encoded already (a start's input, which the client encodes to check its size), so
    not encoded again. The same text as :func:`dumps_event` gives."""
    data = encode_event(event)  # holds the value itself: compact_json would encode it
    data[name] = _SPLICED
    encoded = compact_json(data)
    if encoded.count(_SPLICED_JSON) != 1:  # another field holds the marker's text
        return dumps_event(event)
    return encoded.replace(_SPLICED_JSON, text)


def dumps_checked(event: HistoryEvent, what: str) -> str:
    """:func:`dumps_event`, turning a payload that is not JSON into a
    :class:`perdure.errors.SerializationError` that names ``what``, so it fails where it was
    produced (an activity's thread, a client call) and before any transaction starts."""
    try:
        return dumps_event(event)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON-serialisable: {exc}") from exc


def loads_event(text: str | bytes) -> HistoryEvent:
    """Parse a JSON string written by :func:`dumps_event`."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EventDecodeError(f"stored history event is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EventDecodeError(f"stored history event is not a JSON object: {str(text)[:200]}")
    return decode_event(data)
