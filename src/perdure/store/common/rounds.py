"""A worker round (:meth:`perdure.store.base.Store.run_round`) composed from a backend's
transaction-level steps, so that every backend runs the same steps in the same order and
signals the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from perdure.store.base import (
    ActivityWorkItem,
    OrchestrationWorkItem,
    Outcome,
    RoundRequest,
    RoundResult,
    TurnCommit,
)
from perdure.store.common.encode import PreparedTurn, QueueOptions, prepare_turn
from perdure.store.common.queries import Queries, due_times
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS


@dataclass(frozen=True, slots=True)
class RoundSteps:
    """A backend's functions that run inside its write transaction ``tx`` (which has
    ``conn``, ``now`` and the ``topics`` to signal after the commit)."""

    complete_activities: Callable[[Any, Sequence[Any]], list[Outcome]]
    lock_orchestrations: Callable[..., list[OrchestrationWorkItem]]
    commit_turns: Callable[[Any, Sequence[PreparedTurn]], list[Outcome]]
    lock_activities: Callable[..., list[ActivityWorkItem]]
    queries: Queries  # the backend's named SQL, for the next-due readings
    finish: Callable[[Any], None] | None = None  # completes what the backend's steps held back


def run_round(
    tx: Any,
    steps: RoundSteps,
    options: QueueOptions,
    request: RoundRequest,
    prepared_completions: Sequence[Any],
    run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]],
) -> RoundResult:
    """The round's steps, in the order of the contract, inside ``tx``."""
    completed = steps.complete_activities(tx, prepared_completions) if prepared_completions else []
    locked: list[OrchestrationWorkItem] = []
    if request.orchestration_limit > 0:
        locked = steps.lock_orchestrations(
            tx,
            options,
            request.owner,
            lease_seconds=request.lease_seconds,
            limit=request.orchestration_limit,
            names=request.orchestration_names,
            known_history=request.known_history,
            instance_ids=None,
        )
    turns = run_and_commit(tx, steps, locked, run_turns)
    claimed: list[ActivityWorkItem] = []
    if request.activity_limit > 0:
        claimed = steps.lock_activities(
            tx,
            request.owner,
            lease_seconds=request.lease_seconds,
            limit=request.activity_limit,
            names=request.activity_names,
            task_row_ids=None,
        )
    if steps.finish is not None:
        steps.finish(tx)
    next_message_at, next_task_at = due_times(tx.conn, steps.queries)
    # Work the round created and took itself wakes nobody: signal a queue only if it holds
    # work due now (another worker's names, more than the round's limits).
    if next_message_at is None or next_message_at > tx.now:
        tx.topics.discard(ORCHESTRATIONS)
    if next_task_at is None or next_task_at > tx.now:
        tx.topics.discard(ACTIVITIES)
    return RoundResult(completed, locked, turns, claimed, next_message_at, next_task_at)


def run_and_commit(
    tx: Any,
    steps: RoundSteps,
    locked: list[OrchestrationWorkItem],
    run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]],
) -> list[Outcome]:
    """Run the turns of the ``locked`` instances and commit them, inside ``tx``."""
    if not locked:
        return []
    # A message's stored JSON is written to history as is, not encoded again.
    encoded = {id(m.event): m.event_json for item in locked for m in item.messages if m.event_json}
    return steps.commit_turns(tx, [prepare_turn(c, encoded) for c in run_turns(locked)])
