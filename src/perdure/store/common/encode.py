"""Everything a SQL store encodes before it opens a transaction, so that a payload that is
not JSON fails before anything is written and the write lock is held for less time; and
the options of its queues and its retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perdure.core.history import dumps_checked
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.errors import InvalidInputError
from perdure.store.base import ActivityCompletion, TurnCommit
from perdure.store.common.rows import Row, failure_text, payload, waiting_text


@frozen_record
class StoreOptions:
    """Deferral of undeliverable messages (invariant 3): retry ``max_deliveries`` times with
    exponential backoff from ``defer_backoff`` seconds, doubling, capped at
    ``defer_backoff_cap``; then dead-letter.

    Retention: ``keep_executions`` is how many executions of an instance before its current
    one keep their history and discard records (older ones are deleted when it continues as
    new, or when a new run takes the id); ``None`` keeps them all."""

    max_deliveries: int = 25
    defer_backoff: float = 0.1
    defer_backoff_cap: float = 30.0
    keep_executions: int | None = 5

    def backoff(self, tries: int) -> float:
        """Delay before try ``tries + 1``."""
        return min(self.defer_backoff_cap, self.defer_backoff * 2.0 ** max(0, tries - 1))


def check_retention(keep_executions: object) -> None:
    """Refuse a ``keep_executions`` store option that is not ``None`` or an integer >= 0."""
    if keep_executions is not None and (
        not isinstance(keep_executions, int) or isinstance(keep_executions, bool) or keep_executions < 0
    ):
        raise InvalidInputError(
            f"keep_executions must be None (keep every execution) or an integer >= 0, got {keep_executions!r}"
        )


@frozen_record
class PreparedTurn:
    """A :class:`TurnCommit` with its payloads encoded, so that the transaction does no
    serialisation that could fail half way and holds the write lock for less time."""

    commit: TurnCommit
    status: OrchestrationStatus
    events: tuple[str, ...]
    events_bytes: int
    output: str | None
    failure: str | None
    custom_status: str | None
    waiting_on: str | None
    activity_inputs: tuple[str | None, ...]
    messages: tuple[tuple[str, str], ...]
    continue_as_new_input: str | None


def prepare_turn(commit: TurnCommit, encoded: Mapping[int, str] | None = None) -> PreparedTurn:
    """Encode everything ``commit`` writes; :class:`SerializationError` if something is not JSON.
    ``encoded`` maps ``id(event)`` to the stored JSON of events the caller already holds
    encoded (the messages the turn consumed, as the store read them), as the commit's own
    ``event_json`` does for the events its maker encoded."""
    known, own = encoded or {}, commit.event_json
    events = tuple(own.get(id(e)) or known.get(id(e)) or dumps_checked(e, "a history event") for e in commit.new_events)
    for child in commit.children:
        payload(child.input, f"input of sub-orchestration {child.instance_id!r}")
    return PreparedTurn(
        commit=commit,
        status=OrchestrationStatus(commit.status),
        events=events,
        events_bytes=sum(len(text) if text.isascii() else len(text.encode("utf-8")) for text in events),
        output=payload(commit.output, "orchestration output"),
        failure=failure_text(commit.failure),
        custom_status=payload(commit.custom_status, "custom status"),
        waiting_on=waiting_text(commit.waiting_on),
        activity_inputs=tuple(payload(a.input, f"input of activity {a.name!r}") for a in commit.activities),
        messages=tuple((type(m.event).__name__, dumps_checked(m.event, "a message")) for m in commit.messages),
        continue_as_new_input=payload(commit.continue_as_new_input, "continue-as-new input"),
    )


def prepare_completions(
    completions: Sequence[ActivityCompletion],
) -> list[tuple[ActivityCompletion, str, str]]:
    """Encode each completion's event before the transaction: ``(completion, kind, JSON)``."""
    return [
        (c, type(c.event).__name__, c.event_json or dumps_checked(c.event, "an activity result")) for c in completions
    ]


def instance_after_turn(turn: PreparedTurn, row: Row, now: float) -> dict[str, Any]:
    """The parameters of the ``update_instance_after_turn`` query: the instance ``row`` after
    ``turn`` is appended (or, after a continue-as-new, the next execution with fresh
    history counters), with the turn's evidence for diagnosis."""
    c = turn.commit
    execution_id, input_text, version = c.execution_id, row["input"], c.version
    count = row["history_event_count"] + len(turn.events)
    size = row["history_bytes"] + turn.events_bytes
    if c.continue_as_new:
        execution_id, input_text, count, size = c.execution_id + 1, turn.continue_as_new_input, 0, 0
        version = c.continue_as_new_version
    return {
        "instance_id": c.instance_id,
        "status": turn.status.value,
        "execution_id": execution_id,
        "version": version,
        "input": input_text,
        "output": turn.output,
        "failure": turn.failure,
        "custom_status": turn.custom_status,
        "waiting_on": turn.waiting_on,
        "history_event_count": count,
        "history_bytes": size,
        "now": now,
        "full_replay": int(c.stats.full_replay),
        "replayed_events": c.stats.replayed_events,
        "duration": c.stats.duration,
        "progressed": bool(c.stats.progressed),
    }


def started_instance(new_run: Mapping[str, Any], turn: PreparedTurn) -> dict[str, Any]:
    """The parameters of a new run's row as its first ``turn`` leaves it: ``new_run``, the
    new run's (as ``new_instance_params`` gives them), with the turn applied as
    :func:`instance_after_turn` applies it to a row."""
    after = instance_after_turn(turn, {**new_run, "history_event_count": 0, "history_bytes": 0}, new_run["now"])
    if after["version"] is None:
        after["version"] = new_run["version"]
    return {**new_run, **after}
