"""A worker round (:meth:`perdure.store.base.Store.run_round`) and an eager start
(:meth:`perdure.store.base.Store.create_and_run`) composed from a backend's
transaction-level steps, so that every backend runs the same steps in the same order and
signals the same way.

A round is one transaction, and no orchestration code runs inside it (invariant 10): the
worker runs the turns of the instances it locked in its previous round (and of those it
holds, with the outcomes of their activities handed over) *before* the round, and the
round commits them, records the other outcomes, and locks the instances and tasks for
what comes next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from perdure.core.history import loads_event
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.store.base import (
    ActivityWorkItem,
    InstanceRecord,
    LockedInstance,
    NewInstance,
    OrchestrationWorkItem,
    Outcome,
    QueuedMessage,
    RoundRequest,
    RoundResult,
    TaskRequest,
    TurnCommit,
)
from perdure.store.common.encode import PreparedTurn, StoreOptions, prepare_completions, prepare_turn
from perdure.store.common.queries import Queries, due_times
from perdure.store.common.routing import check_replaceable
from perdure.store.common.rows import lease_tokens, new_run_id, start_row
from perdure.store.common.scheduled import ScheduledTake
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS

T = TypeVar("T")

#: The id of an eager start's ``ExecutionStarted``, handed to its turn without ever being a
#: row. Every message id below zero is such a hand-over (no row to check or delete).
HANDED_OVER = -1


def is_row(message_id: int) -> bool:
    """Whether a consumed message is a queued row (a hand-over has a negative id)."""
    return message_id > 0


def stored_messages(message_ids: Sequence[int]) -> list[int]:
    """The ids among ``message_ids`` that are rows."""
    return [mid for mid in message_ids if mid > 0]


#: Reads what a step sent (a backend may send a statement and read its answer later, with
#: the next one it waits for: no round trip of its own).
Reader = Callable[[], T]


@frozen_record
class RoundSteps:
    """A backend's functions that run inside its write transaction ``tx`` (which has
    ``conn``, ``now`` and the ``topics`` to signal after the commit).

    ``send_lock_activities`` and ``send_due_times`` return readers: the round sends them
    before it locks orchestrations and reads them after. ``send_due_times``' reader must
    answer for the transaction as it is when read (after the orchestrations are locked).
    ``send_due_times(tx, last=True)`` is the round's last statement (it locks no
    orchestrations): a backend may then also signal other processes itself, by the rule of
    :func:`run_round` (a queue only if it holds work due now), and read the answer after
    the COMMIT. Both take the keyword ``horizon`` (see
    :attr:`perdure.store.base.RoundRequest.due_within`)."""

    complete_activities: Callable[[Any, Sequence[Any]], list[Outcome]]
    lock_orchestrations: Callable[..., list[OrchestrationWorkItem]]
    commit_turns: Callable[[Any, Sequence[PreparedTurn]], list[Outcome]]
    send_lock_activities: Callable[..., Reader[list[ActivityWorkItem]]]
    send_due_times: Callable[..., Reader[tuple[float | None, float | None]]]
    #: Both sends at once, where a backend makes them one statement: ``(tx, last, owner,
    #: horizon=..., **send_lock_activities' keywords)`` -> the two readers. ``None``: one
    #: after the other.
    send_lock_activities_and_due_times: (
        Callable[..., tuple[Reader[list[ActivityWorkItem]], Reader[tuple[float | None, float | None]]]] | None
    ) = None


def at_once(lock_activities: Callable[..., list[ActivityWorkItem]]) -> Callable[..., Reader[list[ActivityWorkItem]]]:
    """A ``send_lock_activities`` for a backend whose statements run when called."""

    def send(*args: Any, **kwargs: Any) -> Reader[list[ActivityWorkItem]]:
        tasks = lock_activities(*args, **kwargs)
        return lambda: tasks

    return send


def due_times_when_read(queries: Queries) -> Callable[..., Reader[tuple[float | None, float | None]]]:
    """A ``send_due_times`` that queries when read (a backend whose statements run when
    called)."""

    def send(tx: Any, last: bool, *, horizon: float = math.inf) -> Reader[tuple[float | None, float | None]]:
        def read() -> tuple[float | None, float | None]:
            next_message_at, next_task_at = due_times(tx.conn, queries, horizon=horizon)
            return next_message_at, next_task_at

        return read

    return send


@frozen_record
class PreparedRound:
    """A round's payloads, encoded before its transaction opens (a payload that is not
    JSON fails before anything is written)."""

    turns: list[PreparedTurn]
    completions: list[Any]

    @property
    def durable(self) -> bool:
        """Whether the round must wait for the disk: it commits turns (what they start must
        not run before they are durable)."""
        return bool(self.turns)


def prepare_round(request: RoundRequest) -> PreparedRound:
    """Encode the round's turns and completions. A message's stored JSON is written to
    history as is, not encoded again."""
    return PreparedRound([prepare_turn(c) for c in request.commits], prepare_completions(request.completions))


def run_round(
    tx: Any, steps: RoundSteps, options: StoreOptions, request: RoundRequest, prepared: PreparedRound
) -> Reader[RoundResult]:
    """The round's steps, in the order of the contract, inside ``tx``; the reader of its
    result. A round that locks no orchestrations (``orchestration_limit`` 0) sends nothing
    after its reads: a backend may send its COMMIT before reading them. A backend's
    ``commit_turns`` writes the tasks it may take as scheduled locked (``tx.scheduled``: a
    :class:`ScheduledTake`, or None)."""
    scheduled = take_scheduled(
        tx, request.owner, request.lease_seconds, TaskRequest(request.take_scheduled, request.activity_names)
    )
    turns = steps.commit_turns(tx, prepared.turns) if prepared.turns else []
    # Outcomes a committed turn applied are recorded by its commit; the others are queued.
    applied = {
        c.task_row_id: Outcome.OK
        for turn, outcome in zip(prepared.turns, turns, strict=True)
        if outcome is Outcome.OK
        for c in turn.commit.handed_over
    }
    rest = [p for p in prepared.completions if p[0].task_row_id not in applied]
    recorded = dict(
        zip((p[0].task_row_id for p in rest), steps.complete_activities(tx, rest) if rest else [], strict=True)
    )
    completed = [applied.get(c.task_row_id) or recorded[c.task_row_id] for c in request.completions]
    last = request.orchestration_limit == 0
    horizon = math.inf if request.due_within is None else tx.now + request.due_within
    if request.activity_limit > 0:
        lock = {
            "lease_seconds": request.lease_seconds,
            "limit": request.activity_limit,
            "names": request.activity_names,
            "task_row_ids": None,
            "running": request.running_tasks,
        }
        if steps.send_lock_activities_and_due_times is not None:
            take_tasks, read_due_times = steps.send_lock_activities_and_due_times(
                tx, last, request.owner, horizon=horizon, **lock
            )
        else:
            take_tasks = steps.send_lock_activities(tx, request.owner, **lock)
            read_due_times = steps.send_due_times(tx, last, horizon=horizon)
    elif request.due_times:
        take_tasks, read_due_times = _no_tasks, steps.send_due_times(tx, last, horizon=horizon)
    else:
        take_tasks, read_due_times = _no_tasks, _no_due_times
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
            held=request.held,
        )

    def result() -> RoundResult:
        tasks = [*scheduled(), *take_tasks()]
        next_message_at, next_task_at = read_due_times()
        # Work the round created and took itself wakes nobody: signal a queue only if it
        # holds work due now (another worker's names, more than the round's limits).
        if request.due_times:
            if next_message_at is None or next_message_at > tx.now:
                tx.topics.discard(ORCHESTRATIONS)
            if next_task_at is None or next_task_at > tx.now:
                tx.topics.discard(ACTIVITIES)
        return RoundResult(completed, locked, turns, tasks, next_message_at, next_task_at, tx.now, tx.now)

    return result


def _no_tasks() -> list[ActivityWorkItem]:
    return []


def _no_due_times() -> tuple[float | None, float | None]:
    return None, None


def take_scheduled(
    tx: Any, owner: str, lease_seconds: float, tasks: TaskRequest | None
) -> Reader[list[ActivityWorkItem]]:
    """Have the turns ``tx`` commits next write the tasks ``tasks`` asks for (of those they
    schedule) locked for ``owner`` (:class:`ScheduledTake`, as ``tx.scheduled``); return the
    reader of those tasks. Work the transaction created and took itself wakes nobody: the
    tasks it does not take are signalled."""
    take = (
        ScheduledTake(owner, tx.now, tx.now + lease_seconds, tasks.limit, tasks.names)
        if tasks is not None and tasks.limit > 0
        else None
    )
    tx.scheduled = take
    return take.items if take is not None else _no_tasks


def run_turns_between(
    locked: list[OrchestrationWorkItem],
    run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]],
) -> list[PreparedTurn]:
    """Run the turns of the ``locked`` instances and encode their commits, outside any
    transaction. A message's stored JSON is written to history as is, not encoded again."""
    return [prepare_turn(c) for c in run_turns(locked)]


def first_turn(
    instance: NewInstance,
    now: float,
    replace_terminal: bool,
    get_instance: Callable[[str], InstanceRecord | None],
    run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]],
) -> tuple[NewInstance, OrchestrationWorkItem, list[PreparedTurn]]:
    """An eager start's first turn, run before its transaction opens
    (:meth:`perdure.store.base.Store.create_and_run`): the new run of the id (the next
    execution if a terminal run is to be replaced; a fresh id is not looked up), its work
    item and its encoded turns. Raises :class:`~perdure.errors.InstanceExistsError`,
    nothing run, if the id holds a run the start may not replace."""
    existing = None if instance.fresh_id else get_instance(instance.instance_id)
    execution = 1
    if existing is not None:
        check_replaceable({"instance_id": existing.instance_id, "status": existing.status.value}, replace_terminal)
        execution = existing.execution_id + 1
    run_id = instance.run_id or new_run_id()
    item = eager_item(instance, run_id, execution, now)
    return replace(instance, run_id=run_id), item, run_turns_between([item], run_turns)


def eager_item(instance: NewInstance, run_id: str, execution_id: int, now: float) -> OrchestrationWorkItem:
    """The work item of an eager start's first turn, built before the instance exists: the
    new run with its ``ExecutionStarted`` handed over (:data:`HANDED_OVER`), and the lease
    token its commit will present. The event is decoded from its JSON, as a queued one
    would be: the turn sees the input as its replays will (lists for tuples, string keys),
    not the caller's objects."""
    _, text = start_row(instance, run_id, execution_id, now)
    message = QueuedMessage(
        message_id=HANDED_OVER,
        instance_id=instance.instance_id,
        execution_id=execution_id,
        event=loads_event(text),
        enqueued_at=now,
        visible_at=now,
        delivery_count=1,
        event_json=text,
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
        version=instance.version,
        run_id=run_id,
    )
    [token] = lease_tokens(1)
    return OrchestrationWorkItem(locked, token, now, (message,), (), 0)
