"""A worker round (:meth:`perdure.store.base.Store.run_round`) and an eager start
(:meth:`perdure.store.base.Store.create_and_run`) composed from a backend's
transaction-level steps, so that every backend runs the same steps in the same order and
signals the same way.

A round is two transactions with the orchestration code run between them, never inside
one (invariant 10: no user code while a store transaction is open):

1. the *claim* records the finished activities (as queued messages) and locks the
   instances that are due, under leases; it locks activity tasks too when it locked no
   instance (there is then nothing more to do). A claim holds nothing a crash of the whole
   machine could not lose without harm (leases, and activity outcomes whose tasks would
   then simply run again), so a backend may commit it without waiting for the disk.
2. the turns run, with no transaction open;
3. the *finish* commits the turns (each fenced by its lease) and locks the activity tasks
   they scheduled, durably.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from perdure.core.history import ExecutionStarted, dumps_event
from perdure.core.status import OrchestrationStatus
from perdure.store.base import (
    ActivityWorkItem,
    LockedInstance,
    NewInstance,
    OrchestrationWorkItem,
    Outcome,
    QueuedMessage,
    RoundRequest,
    RoundResult,
    TurnCommit,
)
from perdure.store.common.encode import PreparedTurn, StoreOptions, prepare_turn
from perdure.store.common.queries import Queries, due_times
from perdure.store.common.rows import lease_tokens
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS

#: The id of a message handed to a turn without ever being a row: an eager start's
#: ``ExecutionStarted``. A turn's commit neither checks nor deletes it.
HANDED_OVER = -1


@dataclass(frozen=True, slots=True)
class RoundSteps:
    """A backend's functions that run inside its write transaction ``tx`` (which has
    ``conn``, ``now`` and the ``topics`` to signal after the commit)."""

    complete_activities: Callable[[Any, Sequence[Any]], list[Outcome]]
    lock_orchestrations: Callable[..., list[OrchestrationWorkItem]]
    commit_turns: Callable[[Any, Sequence[PreparedTurn]], list[Outcome]]
    lock_activities: Callable[..., list[ActivityWorkItem]]
    queries: Queries  # the backend's named SQL, for the next-due readings


@dataclass(frozen=True, slots=True)
class Claim:
    """What a round's first transaction did: the outcome of each completion it recorded,
    the instances it locked, and, when it locked none, the round's whole result."""

    completions: list[Outcome]
    locked: list[OrchestrationWorkItem]
    result: RoundResult | None = None


def claim(
    tx: Any,
    steps: RoundSteps,
    options: StoreOptions,
    request: RoundRequest,
    prepared_completions: Sequence[Any],
) -> Claim:
    """The round's first transaction, inside ``tx``: record the completions, lock the due
    instances (which sees the messages just enqueued); with none locked, take activity tasks
    and read the next due times too, which ends the round."""
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
    if locked:
        # The finish transaction signals what is left; the messages this one enqueued are
        # most likely the ones it just took.
        tx.topics.discard(ORCHESTRATIONS)
        tx.topics.discard(ACTIVITIES)
        return Claim(completed, locked)
    return Claim(completed, [], _take_tasks(tx, steps, request, completed, [], []))


def run_turns_between(
    locked: list[OrchestrationWorkItem],
    run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]],
) -> list[PreparedTurn]:
    """Run the turns of the ``locked`` instances and encode their commits, outside any
    transaction. A message's stored JSON is written to history as is, not encoded again."""
    encoded = {id(m.event): m.event_json for item in locked for m in item.messages if m.event_json}
    return [prepare_turn(c, encoded) for c in run_turns(locked)]


def finish(
    tx: Any, steps: RoundSteps, request: RoundRequest, claimed: Claim, turns: Sequence[PreparedTurn]
) -> RoundResult:
    """The round's second transaction, inside ``tx``: commit the turns, then take the
    activity tasks (which sees the tasks the turns just scheduled)."""
    outcomes = steps.commit_turns(tx, turns) if turns else []
    return _take_tasks(tx, steps, request, claimed.completions, claimed.locked, outcomes)


def _take_tasks(
    tx: Any,
    steps: RoundSteps,
    request: RoundRequest,
    completed: list[Outcome],
    locked: list[OrchestrationWorkItem],
    turns: list[Outcome],
) -> RoundResult:
    """The end of a round, inside ``tx``: lock activity tasks, read the next due times and
    decide which queues to signal."""
    tasks: list[ActivityWorkItem] = []
    if request.activity_limit > 0:
        tasks = steps.lock_activities(
            tx,
            request.owner,
            lease_seconds=request.lease_seconds,
            limit=request.activity_limit,
            names=request.activity_names,
            task_row_ids=None,
        )
    next_message_at, next_task_at = due_times(tx.conn, steps.queries)
    # Work the round created and took itself wakes nobody: signal a queue only if it holds
    # work due now (another worker's names, more than the round's limits).
    if next_message_at is None or next_message_at > tx.now:
        tx.topics.discard(ORCHESTRATIONS)
    if next_task_at is None or next_task_at > tx.now:
        tx.topics.discard(ACTIVITIES)
    return RoundResult(completed, locked, turns, tasks, next_message_at, next_task_at, tx.now)


def eager_item(instance: NewInstance, run_id: str, execution_id: int, now: float) -> OrchestrationWorkItem:
    """The work item of an eager start's first turn, built before the instance exists: the
    new run with its ``ExecutionStarted`` handed over (:data:`HANDED_OVER`), and the lease
    token its commit will present."""
    start = ExecutionStarted(
        timestamp=now,
        name=instance.name,
        input=instance.input,
        execution_id=execution_id,
        parent=instance.parent,
        run_id=run_id,
    )
    message = QueuedMessage(
        message_id=HANDED_OVER,
        instance_id=instance.instance_id,
        execution_id=execution_id,
        event=start,
        enqueued_at=now,
        visible_at=now,
        delivery_count=1,
        event_json=dumps_event(start),
        run_id=run_id,
    )
    locked = LockedInstance(
        instance_id=instance.instance_id,
        name=instance.name,
        status=OrchestrationStatus.PENDING,
        execution_id=execution_id,
        history_event_count=0,
        parent=instance.parent,
        custom_status=None,
        run_id=run_id,
    )
    [token] = lease_tokens(1)
    return OrchestrationWorkItem(locked, token, now, (message,), (), 0)


def stored_messages(message_ids: Sequence[int]) -> list[int]:
    """The ids among ``message_ids`` that are rows (not :data:`HANDED_OVER`)."""
    return [mid for mid in message_ids if mid != HANDED_OVER]
