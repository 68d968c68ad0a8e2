"""Findings about messages that never reached an instance: dead letters, and operator
messages (events, terminate, suspend, resume) that were discarded."""

from __future__ import annotations

from perdure.core.history import (
    EventRaised,
    ExecutionResumed,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    UndecodableEvent,
)
from perdure.diagnosis.evidence import InstanceEvidence
from perdure.diagnosis.model import Code, Finding
from perdure.diagnosis.text import iso, plural


def dead_letter_findings(ev: InstanceEvidence) -> list[Finding]:
    """Messages for the instance that were dead-lettered, and operator messages (events,
    terminate, suspend, resume) that were discarded: what the sender meant never arrived.
    Completions and timers discarded after an execution ended are routine and left out."""
    dead = list(ev.dead_letters)
    discarded = [d for d in ev.discards if _is_operator(d.event)]
    if not dead and not discarded:
        return []
    items = [
        {
            "event": _event_label(d.event),
            "reason": d.reason,
            "execution_id": d.execution_id,
            "delivery_count": d.delivery_count,
            "enqueued_at": iso(d.enqueued_at),
            "dead_lettered_at": iso(d.dead_lettered_at),
        }
        for d in dead
    ]
    drops = [
        {
            "event": _event_label(d.event),
            "reason": d.reason,
            "detail": d.detail,
            "execution_id": d.execution_id,
            "discarded_at": iso(d.discarded_at),
        }
        for d in discarded
    ]
    first = (items or drops)[0]
    iid = ev.record.instance_id
    mitigation = (
        f"These messages never reached the orchestration. Dead letters were addressed to an "
        f"instance or execution that did not exist while they were retried: check the "
        f"sender's instance id and timing, then re-send what is still needed (`perdure raise "
        f"{iid} NAME '<json>'`)."
    )
    if any(isinstance(d.event, UndecodableEvent) for d in dead):
        mitigation += (
            " An undecodable one was written by a newer perdure version than this worker's, "
            "or damaged: its stored text is kept in the dead letter; upgrade the workers, or "
            "re-send what it meant."
        )
    return [
        Finding(
            Code.DEAD_LETTER,
            f"{plural(len(items), 'message')} dead-lettered and {plural(len(drops), 'message')} "
            f"discarded for this instance, e.g. {first['event']} ({first['reason']})",
            {"dead_letters": items, "discarded": drops},
            mitigation,
        )
    ]


def _is_operator(event: HistoryEvent) -> bool:
    return isinstance(event, (EventRaised, ExecutionTerminated, ExecutionSuspended, ExecutionResumed))


def _event_label(event: HistoryEvent) -> str:
    if isinstance(event, EventRaised):
        return f"EventRaised {event.name!r}"
    if isinstance(event, UndecodableEvent):
        return f"an undecodable message ({event.error[:160]})"
    return type(event).__name__
