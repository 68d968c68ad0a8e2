"""The activity side of the PostgreSQL store: locking tasks, completing them, leases.

As in the SQLite store, a locked task keeps ``visible_at`` equal to its lease expiry, so
"due, or locked with an expired lease" is the single condition ``visible_at <= now``.
Workers claim tasks with ``FOR UPDATE SKIP LOCKED``: a task another worker is claiming is
passed over, never waited for, and PostgreSQL re-checks ``visible_at`` on the latest
version of each row it locks, so a task just claimed elsewhere is not claimed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from operator import itemgetter
from typing import Any

from perdure.errors import LeaseLost
from perdure.store.base import ActivityCompletion, ActivityWorkItem, Outcome
from perdure.store.common.queries import edited
from perdure.store.common.routing import route_completions
from perdure.store.common.rows import lease_prefix, leased_task
from perdure.store.notify import ACTIVITIES
from perdure.store.postgres.connection import Answer, Tx, bigint_array, text_array
from perdure.store.postgres.orchestrations import (
    Outbox,
    due_times_params,
    due_times_reader,
    insert_discards,
    with_next_message_at,
)
from perdure.store.postgres.queries import Q

__all__ = [
    "abandon",
    "complete_activities",
    "lock_activities",
    "renew_leases",
]


def lock_activities(
    tx: Tx,
    owner: str,
    *,
    lease_seconds: float,
    limit: int,
    names: Collection[str] | None,
    task_row_ids: Collection[int] | None,
    running: Collection[int] = (),
) -> list[ActivityWorkItem]:
    """See :meth:`perdure.store.base.Store.lock_activities`; never the tasks in ``running``
    (the caller's own runs: :attr:`perdure.store.base.RoundRequest.running_tasks`)."""
    return send_lock_activities(
        tx, owner, lease_seconds=lease_seconds, limit=limit, names=names, task_row_ids=task_row_ids, running=running
    )()


def send_lock_activities(tx: Tx, owner: str, **lock: Any) -> Callable[[], list[ActivityWorkItem]]:
    """Send :func:`lock_activities`' one statement (``lock``: its keywords); return the
    function that reads what it locked (a worker round reads it with its other reads: no
    round trip of its own)."""
    params = _lock_params(tx, owner, **lock)
    return _tasks_reader(tx, tx.run(Q.lock_activities, params), owner, params["expires_at"])


def send_lock_activities_and_due_times(
    tx: Tx, last: bool, owner: str, *, horizon: float, **lock: Any
) -> tuple[Callable[[], list[ActivityWorkItem]], Callable[[], tuple[float | None, float | None]]]:
    """:func:`send_lock_activities` (``lock``: its keywords) and :func:`send_due_times`
    (``last``, ``horizon``) in one statement (a worker round's, see
    :class:`perdure.store.common.rounds.RoundSteps`); their readers."""
    params = _lock_params(tx, owner, **lock)
    due = due_times_params(tx, last, horizon)
    answer = tx.run(LOCK_ACTIVITIES_AND_DUE_TIMES, {**params, **due})
    return _tasks_reader(tx, answer, owner, params["expires_at"]), due_times_reader(tx, last, answer, due)


# lock_activities with its UPDATE as the CTE "taken", followed by due_times_after_lock.
LOCK_ACTIVITIES_AND_DUE_TIMES = (
    edited(Q.lock_activities, "\nUPDATE activity_tasks AS t SET", ", taken AS (\nUPDATE activity_tasks AS t SET")
    + "\n"
    + with_next_message_at(Q.due_times_after_lock)
)


def _lock_params(
    tx: Tx,
    owner: str,
    *,
    lease_seconds: float,
    limit: int,
    names: Collection[str] | None,
    task_row_ids: Collection[int] | None,
    running: Collection[int] = (),
) -> dict[str, Any]:
    """The parameters of ``lock_activities`` (and of the statement that includes it)."""
    return {
        "now": tx.now,
        "names": text_array(sorted(names) if names is not None else None),
        "task_row_ids": bigint_array(task_row_ids),
        "running": bigint_array(running),
        "limit": limit,
        "owner": owner,
        "prefix": lease_prefix(),
        "expires_at": tx.now + lease_seconds,
    }


def _tasks_reader(tx: Tx, answer: Answer, owner: str, expires_at: float) -> Callable[[], list[ActivityWorkItem]]:
    """The reader of the tasks ``answer`` locked (rows without a task: none)."""

    def read() -> list[ActivityWorkItem]:
        rows = sorted((r for r in answer.fetchall() if r["task_row_id"] is not None), key=itemgetter("n"))
        return [leased_task(row, owner, tx.now, expires_at) for row in rows]

    return read


def complete_activities(tx: Tx, prepared: Sequence[tuple[ActivityCompletion, str, str]]) -> list[Outcome]:
    """See :meth:`perdure.store.base.Store.complete_activities`.

    The instances are held (shared) before the tasks are locked, in the order commit_turns
    uses, so "terminal" and "execution ended" are decided on their latest state.
    """
    if not prepared:
        return []
    ids = sorted({c.task_row_id for c, _, _ in prepared})
    tx.run(Q.lock_instances_of_tasks, {"ids": ids})
    tasks = {r["task_row_id"]: r for r in tx.all(Q.tasks_with_instances, {"ids": ids})}
    routes = route_completions([c for c, _, _ in prepared], tasks)
    done: list[int] = []
    outbox = Outbox()
    discards: list[tuple[str, str | None, int | None, str, str | None]] = []
    reasons: list[str] = []
    for (_completion, kind, text), (outcome, row, reason, detail) in zip(prepared, routes, strict=True):
        if row is None:
            continue
        done.append(row["task_row_id"])
        if outcome is Outcome.DISCARDED:
            discards.append((row["instance_id"], row["run_id"], row["execution_id"], text, detail))
            reasons.append(reason)
        else:
            outbox.add(row["instance_id"], row["run_id"], row["execution_id"], kind, text, tx.now, None)
    outbox.flush(tx)
    insert_discards(tx, discards, reasons)
    if done:
        tx.run(Q.delete_tasks_by_id, {"ids": done})
    return [outcome for outcome, _, _, _ in routes]


def renew_leases(tx: Tx, leases: Sequence[tuple[int, str]], lease_seconds: float) -> list[bool]:
    """See :meth:`perdure.store.base.Store.renew_activity_leases`."""
    expires_at = tx.now + lease_seconds
    rows = tx.all(
        Q.renew_activity_leases,
        {"expires_at": expires_at, "ids": [i for i, _ in leases], "tokens": [t for _, t in leases]},
    )
    renewed = {(r["task_row_id"], r["lease_token"]) for r in rows}
    return [lease in renewed for lease in leases]


def abandon(tx: Tx, task_row_id: int, token: str, retry_after: float) -> None:
    """See :meth:`perdure.store.base.Store.abandon_activity`."""
    released = tx.count(
        Q.abandon_activity,
        {"task_row_id": task_row_id, "token": token, "visible_at": tx.now + max(0.0, retry_after)},
    )
    if not released:
        raise LeaseLost(f"the lease on activity task {task_row_id} is no longer held by this token")
    if retry_after <= 0:
        tx.notify(ACTIVITIES)
