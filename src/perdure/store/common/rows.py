"""Conversions between store records and database rows (JSON text columns, NULL for None),
for every SQL store."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityScheduled,
    EventDecodeError,
    ExecutionStarted,
    HistoryEvent,
    ParentRef,
    UndecodableEvent,
    dumps_event,
    dumps_event_with,
    loads_event,
)
from perdure.core.payload import compact_json, dumps_payload, loads_payload
from perdure.core.registry import version_key
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import WaitingOn
from perdure.errors import InvalidInputError
from perdure.store.base import (
    ActivityWorkItem,
    DeadLetter,
    DiscardRecord,
    HistoryRecord,
    InstanceCount,
    InstanceRecord,
    InstanceStats,
    InstanceSummary,
    LockedInstance,
    NewActivityTask,
    NewInstance,
    QueueDepth,
    QueuedMessage,
    TurnCommit,
    WorkerRecord,
)
from perdure.store.common.tokens import random_hex

#: A database row, read by column name (``sqlite3.Row``, psycopg's ``dict_row``).
Row = Mapping[str, Any]

TERMINAL = tuple(s.value for s in OrchestrationStatus if s.is_terminal)

#: Status column value -> status (a dict lookup is several times cheaper than the Enum call).
STATUS = {s.value: s for s in OrchestrationStatus}


def new_run_id() -> str:
    """A fresh run token (invariant 9): random, so no two runs of any id share one."""
    return random_hex(16)


def lease_tokens(count: int) -> list[str]:
    """``count`` fresh lease tokens: one random prefix per call, unique by position (a token
    only has to differ from every other token ever issued for the same row)."""
    prefix = lease_prefix()
    return [f"{prefix}{i:x}" for i in range(count)]


def lease_prefix() -> str:
    """The random prefix of a batch of lease tokens (:func:`lease_tokens`; a store that
    numbers the tokens itself appends the position in hex)."""
    return random_hex(12)


def payload(value: Any, what: str = "value") -> str | None:
    """A payload column: JSON text, or NULL for None."""
    return None if value is None else dumps_payload(value, what=what)


def failure_text(failure: Failure | None) -> str | None:
    """A failure column."""
    return None if failure is None else compact_json(failure.to_dict())


def waiting_text(waiting_on: WaitingOn) -> str | None:
    """A waiting_on column (NULL when nothing is awaited)."""
    if waiting_on.is_empty():
        return None
    return compact_json(waiting_on.to_dict())


def json_list(values: Any) -> str | None:
    """A filter parameter for ``json_each``: NULL means "no filter"."""
    return None if values is None else json.dumps(list(values))


def event_row(event: HistoryEvent) -> tuple[str, str]:
    """``(kind, event JSON)`` for a message row."""
    return type(event).__name__, dumps_event(event)


def input_column(instance: NewInstance) -> str | None:
    """A new instance's input column: NULL for no input, else its JSON, as its caller
    encoded it if it did (:attr:`NewInstance.input_json`: not encoded again)."""
    if instance.input is None:
        return None
    if instance.input_json is not None:
        return instance.input_json
    return payload(instance.input, f"input of instance {instance.instance_id!r}")


def start_row(instance: NewInstance, run_id: str, execution_id: int, now: float) -> tuple[str, str]:
    """:func:`event_row` of the ``ExecutionStarted`` of ``instance``'s new run, its input
    written as its caller encoded it if it did."""
    start = instance.start_event(run_id, execution_id, now)
    if instance.input is None or instance.input_json is None:
        return event_row(start)
    return type(start).__name__, dumps_event_with(start, "input", instance.input_json)


def new_instance_params(
    instance_id: str,
    name: str,
    input_text: str | None,
    parent: ParentRef | None,
    now: float,
    run_id: str,
    execution_id: int = 1,
    version: int | None = None,
    status: OrchestrationStatus = OrchestrationStatus.PENDING,
) -> dict[str, Any]:
    """Parameters of the ``insert_instance`` query: an instance of run ``run_id`` (PENDING:
    nothing run yet, unless ``status`` says what the first turn, written in the same
    transaction, leaves), whose first execution is ``execution_id`` (1 for the first run of
    an id; executions are numbered across the runs of an id), running ``version``."""
    return {
        "version": version,
        "instance_id": instance_id,
        "run_id": run_id,
        "execution_id": execution_id,
        "name": name,
        "status": status.value,
        "input": input_text,
        **parent_params(parent),
        "now": now,
    }


def new_task_params(task: NewActivityTask, input_text: str, now: float) -> dict[str, Any]:
    """The row of a new activity task (its input already encoded), visible at ``now``
    unless it says otherwise."""
    return {
        "instance_id": task.instance_id,
        "run_id": task.run_id,
        "execution_id": task.execution_id,
        "task_id": task.task_id,
        "name": task.name,
        "input": input_text,
        "attempt": task.attempt,
        "visible_at": now if task.visible_at is None else task.visible_at,
    }


def parent_params(parent: ParentRef | None) -> dict[str, Any]:
    """The parent columns of an ``instances`` row (NULL for a top-level instance)."""
    return {
        "parent_instance_id": parent.instance_id if parent else None,
        "parent_run_id": parent.run_id if parent else None,
        "parent_execution_id": parent.execution_id if parent else None,
        "parent_task_id": parent.task_id if parent else None,
    }


def instance_from_row(row: Row) -> InstanceRecord:
    """An :class:`InstanceRecord` from an ``instances`` row."""
    failure = row["failure"]
    waiting = row["waiting_on"]
    return InstanceRecord(
        instance_id=row["instance_id"],
        name=row["name"],
        status=STATUS[row["status"]],
        execution_id=row["execution_id"],
        input=loads_payload(row["input"]),
        output=loads_payload(row["output"]),
        failure=Failure.from_dict(json.loads(failure)) if failure else None,
        custom_status=loads_payload(row["custom_status"]),
        parent=parent_of(row),
        created_at=row["created_at"],
        last_updated_at=row["last_updated_at"],
        history_event_count=row["history_event_count"],
        history_bytes=row["history_bytes"],
        waiting_on=WaitingOn.from_dict(json.loads(waiting)) if waiting else WaitingOn(),
        stats=InstanceStats(
            turns=row["turns"],
            full_replays=row["full_replays"],
            replayed_events=row["replayed_events"],
            last_turn_duration=row["last_turn_duration"],
            last_progress_at=row["last_progress_at"],
        ),
        run_id=row["run_id"],
        version=row["version"],
    )


def locked_instance_from_row(row: Row) -> LockedInstance:
    """A :class:`LockedInstance` from an ``instances`` row (payloads other than the custom
    status are left undecoded: a turn does not read them)."""
    return LockedInstance(
        instance_id=row["instance_id"],
        name=row["name"],
        status=STATUS[row["status"]],
        execution_id=row["execution_id"],
        history_event_count=row["history_event_count"],
        parent=parent_of(row),
        custom_status=loads_payload(row["custom_status"]),
        run_id=row["run_id"],
        version=row["version"],
    )


def instance_key(row: Row) -> str:
    """The routing key of an ``instances`` row (``name@version``, ``name@*`` while its
    version is not chosen): a worker takes the instance only if it runs that key."""
    return version_key(row["name"], row["version"])


def continue_as_new_start(commit: TurnCommit, row: Row, now: float) -> ExecutionStarted:
    """The ``ExecutionStarted`` of the execution that ``commit`` continues as new into: the
    same run as ``row`` (the instance's row), with the messages it takes first."""
    return ExecutionStarted(
        timestamp=now,
        name=row["name"],
        input=commit.continue_as_new_input,
        execution_id=commit.execution_id + 1,
        parent=parent_of(row),
        run_id=row["run_id"],
        carried=tuple(commit.carried),
        version=commit.continue_as_new_version,
        trace=commit.continue_as_new_trace,
    )


def parent_of(row: Row) -> ParentRef | None:
    """The parent of a sub-orchestration's ``instances`` row, else ``None``."""
    if row["parent_instance_id"] is None:
        return None
    return ParentRef(row["parent_instance_id"], row["parent_execution_id"], row["parent_task_id"], row["parent_run_id"])


def summary_from_row(row: Row) -> InstanceSummary:
    """An :class:`InstanceSummary` from a row of the light ``instances`` columns."""
    return InstanceSummary(
        instance_id=row["instance_id"],
        name=row["name"],
        status=OrchestrationStatus(row["status"]),
        created_at=row["created_at"],
        last_updated_at=row["last_updated_at"],
        last_progress_at=row["last_progress_at"],
        history_event_count=row["history_event_count"],
        history_bytes=row["history_bytes"],
    )


def count_from_row(row: Row) -> InstanceCount:
    """An :class:`InstanceCount` from an ``instance_counts`` row."""
    return InstanceCount(row["name"], OrchestrationStatus(row["status"]), row["count"])


def stored_event(text: str) -> HistoryEvent:
    """A stored message's event, or an :class:`UndecodableEvent` holding its text if this
    version cannot decode it: one bad message must not make a queue, a dead letter list or
    a diagnosis unreadable."""
    try:
        return loads_event(text)
    except EventDecodeError as exc:
        return UndecodableEvent(text=text, error=str(exc))


def message_from_row(row: Row, delivery_bump: int = 0) -> QueuedMessage:
    """A :class:`QueuedMessage` from an ``orchestration_messages`` row (its event an
    :class:`UndecodableEvent` if it cannot be decoded)."""
    return QueuedMessage(
        message_id=row["message_id"],
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        event=stored_event(row["event"]),
        enqueued_at=row["enqueued_at"],
        visible_at=row["visible_at"],
        delivery_count=row["delivery_count"] + delivery_bump,
        event_json=row["event"],
        run_id=row["run_id"],
    )


def decode_deliveries(rows: Sequence[Row]) -> tuple[dict[int, QueuedMessage], list[Row]]:
    """The messages of ``rows`` as delivered (delivery count bumped), by message id, and the
    rows whose event this version cannot decode: those are dead-lettered, not delivered (a
    delivery would fail every round that locks the instance, and with it the others')."""
    decoded: dict[int, QueuedMessage] = {}
    undecodable: list[Row] = []
    for row in rows:
        message = message_from_row(row, delivery_bump=1)
        if isinstance(message.event, UndecodableEvent):
            undecodable.append(row)
        else:
            decoded[row["message_id"]] = message
    return decoded, undecodable


def task_from_row(row: Row) -> ActivityWorkItem:
    """An :class:`ActivityWorkItem` from an ``activity_tasks`` row (empty lease fields when
    the task is not locked)."""
    return _task(
        row,
        lease=(row["lease_token"] or "", row["lease_expires_at"] or 0.0, row["locked_at"], row["lease_owner"]),
        delivery_count=row["delivery_count"],
        visible_at=row["visible_at"],
    )


def locked_task(row: Row, token: str, owner: str, now: float, expires_at: float) -> ActivityWorkItem:
    """The :class:`ActivityWorkItem` of a task row read just before this transaction locked it
    for ``owner`` with ``token`` until ``expires_at`` (the row still holds the old lease)."""
    return _task(
        row, lease=(token, expires_at, now, owner), delivery_count=row["delivery_count"] + 1, visible_at=expires_at
    )


def leased_task(row: Row, owner: str, now: float, expires_at: float) -> ActivityWorkItem:
    """The :class:`ActivityWorkItem` of a task row as locked for ``owner`` until ``expires_at``
    (its new token and delivery count)."""
    return _task(
        row,
        lease=(row["lease_token"], expires_at, now, owner),
        delivery_count=row["delivery_count"],
        visible_at=expires_at,
    )


def _task(
    row: Row, *, lease: tuple[str, float, float | None, str | None], delivery_count: int, visible_at: float | None
) -> ActivityWorkItem:
    token, expires_at, locked_at, owner = lease
    return ActivityWorkItem(
        task_row_id=row["task_row_id"],
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        task_id=row["task_id"],
        name=row["name"],
        input=loads_payload(row["input"]),
        attempt=row["attempt"],
        lease_token=token,
        lease_expires_at=expires_at,
        enqueued_at=row["enqueued_at"],
        delivery_count=delivery_count,
        locked_at=locked_at,
        lease_owner=owner,
        visible_at=visible_at,
        run_id=row["run_id"],
    )


def task_event(row: Row) -> HistoryEvent:
    """The ``ActivityScheduled`` event recorded when a queued task is discarded."""
    return ActivityScheduled(
        timestamp=row["enqueued_at"],
        task_id=row["task_id"],
        name=row["name"],
        input=loads_payload(row["input"]),
        attempt=row["attempt"],
    )


def decode_history(
    texts: Sequence[str], first_sequence: int, execution_id: int
) -> tuple[tuple[HistoryEvent, ...], str | None]:
    """Decode stored history events ``first_sequence, first_sequence + 1, ...`` of one
    execution: ``(events, None)``, or ``((), error)`` naming the first event that cannot be
    decoded (the store hands the error to the runtime instead of raising; see
    :attr:`perdure.store.base.OrchestrationWorkItem.history_error`)."""
    events = []
    for offset, text in enumerate(texts):
        try:
            events.append(loads_event(text))
        except EventDecodeError as exc:
            return (), (f"history event {first_sequence + offset} of execution {execution_id} cannot be decoded: {exc}")
    return tuple(events), None


def history_from_row(row: Row) -> HistoryRecord:
    """A :class:`HistoryRecord` from a ``history`` row."""
    return HistoryRecord(row["execution_id"], row["sequence"], loads_event(row["event"]))


def dead_letter_from_row(row: Row) -> DeadLetter:
    """A :class:`DeadLetter` from a ``dead_letters`` row."""
    return DeadLetter(
        dead_letter_id=row["dead_letter_id"],
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        event=stored_event(row["event"]),
        reason=row["reason"],
        delivery_count=row["delivery_count"],
        enqueued_at=row["enqueued_at"],
        dead_lettered_at=row["dead_lettered_at"],
        run_id=row["run_id"],
    )


def discard_from_row(row: Row) -> DiscardRecord:
    """A :class:`DiscardRecord` from a ``discarded_messages`` row."""
    return DiscardRecord(
        discard_id=row["discard_id"],
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        event=stored_event(row["event"]),
        reason=row["reason"],
        detail=row["detail"],
        discarded_at=row["discarded_at"],
        run_id=row["run_id"],
    )


def worker_params(worker: WorkerRecord, now: float) -> dict[str, Any]:
    """Parameters of the ``upsert_worker`` query."""
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "orchestrations": json.dumps(list(worker.orchestrations)),
        "activities": json.dumps(list(worker.activities)),
        "concurrency": json.dumps(dict(worker.concurrency)),
        "started_at": worker.started_at,
        "heartbeat_at": now,
    }


def worker_from_row(row: Row) -> WorkerRecord:
    """A :class:`WorkerRecord` from a ``workers`` row."""
    return WorkerRecord(
        worker_id=row["worker_id"],
        host=row["host"],
        pid=row["pid"],
        orchestrations=tuple(json.loads(row["orchestrations"])),
        activities=tuple(json.loads(row["activities"])),
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        concurrency=json.loads(row["concurrency"]),
    )


def encode_cursor(created_at: float, instance_id: str) -> str:
    """The opaque ``list_instances`` cursor: the last row's sort key."""
    raw = json.dumps([created_at, instance_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Read a cursor made by :func:`encode_cursor`; :class:`InvalidInputError` otherwise."""
    try:
        created_at, instance_id = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        if not math.isfinite(created_at := float(created_at)):
            raise ValueError("not a time")
        return created_at, str(instance_id)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InvalidInputError(f"invalid list cursor {cursor!r}") from exc


def queue_depths_from_rows(rows: Sequence[Row], now: float) -> list[QueueDepth]:
    """The rows of the ``queue_depths`` query as records, sorted by kind then name (no name first)."""
    depths = [
        QueueDepth(
            kind=r["kind"],
            name=r["name"],
            depth=int(r["depth"]),
            visible=int(r["visible"] or 0),
            oldest_visible_age=None if r["oldest_visible"] is None else max(0.0, now - r["oldest_visible"]),
        )
        for r in rows
    ]
    return sorted(depths, key=lambda d: (d.kind, d.name is not None, d.name or ""))
