"""The delivery rule (invariants 3, 4, 5, 9 and 10), the same for every store and every way
a turn is run: which queued messages reach an instance's turn and in which order, where an
activity's outcome goes, and what a child start does with an id that is taken.

Order: an instance's deliverable messages are handed over in the order they were enqueued
(``message_id``), with one exception: an execution whose history is empty takes its
``ExecutionStarted`` first. Nothing else is reordered. The events and operator messages a
continue-as-new carries over travel inside the new execution's ``ExecutionStarted``
(:attr:`perdure.core.history.ExecutionStarted.carried`), so they keep their place ahead of
everything that arrives later without any sorting here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

from perdure.core.failure import Failure
from perdure.core.history import DiscardReason, ExecutionStarted
from perdure.core.rewind import child_outcome
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceExistsError
from perdure.store.base import ActivityCompletion, ChildStart, InstanceQuery, Message, Outcome, TurnCommit
from perdure.store.common.rows import TERMINAL, Row, parent_of

#: A message sorted away with its reason and detail.
Discard = tuple[Row, str, str]


def route_messages(
    messages: Sequence[Row], current_execution: int, current_run: str
) -> tuple[list[Row], list[Discard], list[Row]]:
    """Sort an instance's visible messages (in enqueue order) by the run and execution they
    target: ``(deliver, discard, future)``.

    - addressed to another run of the instance id (``run_id`` set and not the current run):
      discarded, ``stale_run`` (invariant 9);
    - addressed to the current execution, or to "whichever is current" (``execution_id``
      NULL): delivered, in enqueue order;
    - addressed to an ended execution: discarded, ``stale_execution``;
    - addressed to an execution that does not exist yet: future (deferred, never deleted).
    """
    deliver: list[Row] = []
    discard: list[Discard] = []
    future: list[Row] = []
    for m in messages:
        run = m["run_id"]
        if run is not None and run != current_run:
            discard.append((m, DiscardReason.STALE_RUN, stale_run_detail(run, current_run)))
            continue
        target = m["execution_id"]
        if target is None or target == current_execution:
            deliver.append(m)
        elif target < current_execution:
            discard.append((m, DiscardReason.STALE_EXECUTION, _ended(target, current_execution)))
        else:
            future.append(m)
    return deliver, discard, future


def start_first(deliver: list[Row]) -> tuple[list[Row], bool]:
    """The deliverable messages of an execution whose history is still empty: its
    ``ExecutionStarted`` first, the others after it in enqueue order; and whether the start
    is among them (if not, the others must wait for it)."""
    starts = [m for m in deliver if m["kind"] == ExecutionStarted.__name__]
    if not starts:
        return [], False
    return starts + [m for m in deliver if m["kind"] != ExecutionStarted.__name__], True


def route_completions(
    completions: Sequence[ActivityCompletion], tasks: Mapping[int, Row]
) -> list[tuple[Outcome, Row | None, str | None, str | None]]:
    """Sort activity completions, given their ``tasks`` rows (by ``task_row_id``, with the
    instance's ``instance_status``, ``current_execution`` and ``current_run``): for each,
    ``(outcome, task row, discard reason, detail)``.

    ``LEASE_LOST`` (no row) if the task is gone, its lease token is no longer the
    completion's (another caller took the lease over), or an earlier completion of the
    batch already settled it; ``DISCARDED`` with the reason if the instance has ended, its
    run is not the task's, or the execution that scheduled the task has ended; else ``OK``,
    to be enqueued to the task's run and execution.
    """
    routes: list[tuple[Outcome, Row | None, str | None, str | None]] = []
    settled: set[int] = set()
    for completion in completions:
        row = tasks.get(completion.task_row_id)
        if row is None or completion.task_row_id in settled or row["lease_token"] != completion.lease_token:
            routes.append((Outcome.LEASE_LOST, None, None, None))
            continue
        settled.add(completion.task_row_id)
        status, current = row["instance_status"], row["current_execution"]
        run, current_run = row["run_id"], row["current_run"]
        if status is None or status in TERMINAL:
            detail = f"instance is {status}" if status else "instance no longer exists"
            routes.append((Outcome.DISCARDED, row, DiscardReason.TERMINAL_INSTANCE, detail))
        elif run is not None and run != current_run:
            routes.append((Outcome.DISCARDED, row, DiscardReason.STALE_RUN, stale_run_detail(run, current_run)))
        elif current != row["execution_id"]:
            routes.append((Outcome.DISCARDED, row, DiscardReason.STALE_EXECUTION, _ended(row["execution_id"], current)))
        else:
            routes.append((Outcome.OK, row, None, None))
    return routes


def parent_report(commit: TurnCommit, row: Row, now: float) -> Message | None:
    """The message a sub-orchestration whose turn ``commit`` ends it sends to its parent
    task: its result, failure or termination (:func:`perdure.core.rewind.child_outcome`).
    Addressed from the instance's row (``row``, read in the commit's transaction), not from
    its history: a reset re-attaches a running child to the parent's new run by changing the
    row, and a turn in flight meanwhile reports to the new run all the same."""
    parent = parent_of(row)
    if parent is None or not OrchestrationStatus(commit.status).is_terminal:
        return None
    event = child_outcome(
        commit.instance_id, OrchestrationStatus(commit.status), commit.output, commit.failure, parent.task_id, now
    )
    return Message(parent.instance_id, event, execution_id=parent.execution_id, run_id=parent.run_id)


def check_replaceable(existing: Row, replace_terminal: bool) -> None:
    """Raise :class:`~perdure.errors.InstanceExistsError` unless a start may replace the
    instance ``existing`` holding its id (a terminal one, with ``replace_terminal``)."""
    iid, status = existing["instance_id"], existing["status"]
    if status not in TERMINAL:
        raise InstanceExistsError(f"instance {iid!r} already exists and is {status}")
    if not replace_terminal:
        raise InstanceExistsError(
            f"instance {iid!r} already exists ({status}); purge it or start with replace_terminal=True to reuse the id"
        )


def purges_orphans(query: InstanceQuery) -> bool:
    """Whether ``Store.purge_where(query)`` also purges what instances that no longer exist
    (or never did) left behind: dead letters, discard records, queued messages. Only a
    query without filters, or with an id prefix alone, reaches them: they have no name,
    status, parent or creation time to match."""
    return (
        query.statuses is None
        and query.name is None
        and query.parent_instance_id is None
        and query.created_after is None
        and query.created_before is None
    )


class ChildStartRule(Enum):
    """What a child start does with its instance id (:func:`child_start_rule`)."""

    CREATE = "create"  # the id is free
    EXISTS = "exists"  # this very start was applied already: nothing to do
    REPLACE = "replace"  # a terminal child of the same parent instance: a new run replaces it
    REFUSE = "refuse"  # held by another instance: the parent's task fails at once


def child_start_rule(existing: Row | None, child: ChildStart) -> ChildStartRule:
    """Decide a child start given the ``instances`` row holding its id (invariants 4, 9).

    An id held by a *terminal* child of the same parent instance (an earlier attempt of a
    child retried under an explicit id, or a child left by an earlier run of the parent) is
    replaced by the new run; an id held by a running instance, or by an instance that is not
    this parent's child, is refused: the parent's task fails at once instead of waiting.
    """
    if existing is None:
        return ChildStartRule.CREATE
    parent = child.parent
    if existing["parent_instance_id"] != parent.instance_id:
        return ChildStartRule.REFUSE
    same_run = existing["parent_run_id"] is None or parent.run_id is None or existing["parent_run_id"] == parent.run_id
    if (existing["parent_execution_id"], existing["parent_task_id"]) == (
        parent.execution_id,
        parent.task_id,
    ) and same_run:
        return ChildStartRule.EXISTS
    return ChildStartRule.REPLACE if existing["status"] in TERMINAL else ChildStartRule.REFUSE


def child_refusal(existing: Row, child: ChildStart) -> Failure:
    """The failure a parent's task gets when its child's id is held by another instance."""
    owner = (
        f"a child of instance {existing['parent_instance_id']!r}"
        if existing["parent_instance_id"] is not None
        else "an instance that is not a child"
    )
    return Failure(
        "perdure.errors.InstanceExistsError",
        f"cannot start sub-orchestration {child.name!r}: instance id {child.instance_id!r} "
        f"is already used by another instance ({owner}, orchestration {existing['name']!r}, "
        f"status {existing['status']})",
        non_retryable=True,
    )


def stale_run_detail(run: str, current_run: str | None) -> str:
    """The detail of a discard for another run of the instance id."""
    now = f"run {current_run[:8]} is current" if current_run else "the instance no longer exists"
    return f"addressed to run {run[:8]} of this instance id; {now}"


def _ended(execution_id: int, current: int) -> str:
    """The detail of a discard for an ended execution."""
    return f"execution {execution_id} has ended; execution {current} is current"
