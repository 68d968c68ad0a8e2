"""The JSON shapes the API serves for records that have no ``to_dict()`` of their own:
history events, workers, queues, dead letters and instance counts. Times are ISO 8601 UTC
strings (keys ending ``_at``), durations seconds (keys ending ``_s``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from perdure.core.history import HistoryEvent
from perdure.core.status import OrchestrationStatus
from perdure.diagnosis.text import iso
from perdure.store.base import DeadLetter, InstanceCount, QueueDepth, WorkerRecord
from perdure.views import event_dict

#: A worker whose last heartbeat is older than this is shown as gone (three missed
#: heartbeats at the default interval, as diagnosis's ``worker_timeout``).
WORKER_TIMEOUT = 15.0


def history_event(sequence: int, event: HistoryEvent) -> dict[str, Any]:
    """One history event: ``sequence`` (0-based), ``kind``, ``time`` and its other ``fields``
    (as the client's JSON form, :func:`perdure.views.event_dict`: times in ISO 8601 UTC)."""
    fields = event_dict(event)
    return {"sequence": sequence, "kind": fields.pop("kind"), "time": fields.pop("time"), "fields": fields}


def worker(record: WorkerRecord, now: float) -> dict[str, Any]:
    """A worker: identity, registered names, concurrency and load, heartbeat age and
    whether it counts as alive."""
    age = max(0.0, now - record.heartbeat_at)
    conc = dict(record.concurrency)
    return {
        "worker_id": record.worker_id,
        "host": record.host,
        "pid": record.pid,
        "alive": age <= WORKER_TIMEOUT,
        "started_at": iso(record.started_at),
        "heartbeat_at": iso(record.heartbeat_at),
        "heartbeat_age_s": round(age, 3),
        "activities_running": conc.get("activities_running"),
        "activity_concurrency": conc.get("activity_concurrency"),
        "orchestration_concurrency": conc.get("orchestration_concurrency"),
        "orchestrations": list(record.orchestrations),
        "activities": list(record.activities),
    }


def queue_depth(depth: QueueDepth) -> dict[str, Any]:
    """One queue: ``kind``, ``name``, ``depth``, ``visible`` and ``oldest_visible_age_s``."""
    age = depth.oldest_visible_age
    return {
        "kind": depth.kind,
        "name": depth.name,
        "depth": depth.depth,
        "visible": depth.visible,
        "oldest_visible_age_s": None if age is None else round(age, 3),
    }


def dead_letter(letter: DeadLetter) -> dict[str, Any]:
    """A dead-lettered message with its event in the history-event shape."""
    event = history_event(0, letter.event)
    return {
        "dead_letter_id": letter.dead_letter_id,
        "instance_id": letter.instance_id,
        "execution_id": letter.execution_id,
        "reason": letter.reason,
        "delivery_count": letter.delivery_count,
        "enqueued_at": iso(letter.enqueued_at),
        "dead_lettered_at": iso(letter.dead_lettered_at),
        "event": {"kind": event["kind"], "time": event["time"], "fields": event["fields"]},
    }


def counts(rows: Iterable[InstanceCount]) -> dict[str, Any]:
    """``{"total", "by_status": {STATUS: n}, "by_name": {name: {STATUS: n}}}``, every status
    present in ``by_status``."""
    by_status = {s.value: 0 for s in OrchestrationStatus}
    by_name: dict[str, dict[str, int]] = {}
    for row in rows:
        by_status[row.status.value] += row.count
        by_name.setdefault(row.name, {})[row.status.value] = row.count
    return {"total": sum(by_status.values()), "by_status": by_status, "by_name": by_name}


def page(items: Sequence[Any], next_cursor: str | None) -> dict[str, Any]:
    """A page: ``{"items", "next_cursor"}``."""
    return {"items": list(items), "next_cursor": next_cursor}
