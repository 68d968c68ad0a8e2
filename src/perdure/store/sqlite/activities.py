"""The activity side of the SQLite store: locking tasks, completing them, leases.

A locked task keeps ``visible_at`` equal to its lease expiry, so "due, or locked with an
expired lease" is the single condition ``visible_at <= now`` and one index serves both the
queue scan and lease takeover.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

from perdure.errors import LeaseLost
from perdure.store.base import ActivityCompletion, ActivityWorkItem, Outcome
from perdure.store.common.routing import route_completions
from perdure.store.common.rows import json_list, lease_tokens, locked_task
from perdure.store.notify import ACTIVITIES, ORCHESTRATIONS
from perdure.store.sqlite.orchestrations import message_params
from perdure.store.sqlite.queries import Q
from perdure.store.sqlite.tx import Tx


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
    rows = tx.conn.execute(
        Q.activity_candidates,
        {
            "now": tx.now,
            "names": json_list(sorted(names) if names is not None else None),
            "task_row_ids": json_list(task_row_ids),
            "running": json_list(running),
            "limit": limit,
        },
    ).fetchall()
    if not rows:
        return []
    expires_at = tx.now + lease_seconds
    tokens = lease_tokens(len(rows))
    tx.conn.executemany(
        Q.lock_activity_task,
        [
            {
                "task_row_id": r["task_row_id"],
                "owner": owner,
                "token": t,
                "expires_at": expires_at,
                "now": tx.now,
            }
            for r, t in zip(rows, tokens, strict=True)
        ],
    )
    return [locked_task(row, token, owner, tx.now, expires_at) for row, token in zip(rows, tokens, strict=True)]


def complete_activities(tx: Tx, prepared: Sequence[tuple[ActivityCompletion, str, str]]) -> list[Outcome]:
    """See :meth:`perdure.store.base.Store.complete_activities`."""
    if not prepared:
        return []
    ids = [c.task_row_id for c, _, _ in prepared]
    tasks = {r["task_row_id"]: r for r in tx.conn.execute(Q.tasks_with_instances, {"ids": json.dumps(ids)})}
    routes = route_completions([c for c, _, _ in prepared], tasks)
    messages, discards, done = [], [], []
    for (_completion, kind, text), (outcome, row, reason, detail) in zip(prepared, routes, strict=True):
        if row is None:
            continue
        done.append(row["task_row_id"])
        if outcome is Outcome.DISCARDED:
            discards.append(
                {
                    "instance_id": row["instance_id"],
                    "run_id": row["run_id"],
                    "execution_id": row["execution_id"],
                    "event": text,
                    "reason": reason,
                    "detail": detail,
                    "now": tx.now,
                }
            )
        else:
            messages.append(
                message_params(row["instance_id"], row["run_id"], row["execution_id"], kind, text, tx.now, None)
            )
    if messages:
        tx.conn.executemany(Q.insert_message, messages)
        tx.notify(ORCHESTRATIONS)
    if discards:
        tx.conn.executemany(Q.insert_discard, discards)
    tx.conn.executemany(Q.delete_task, [{"task_row_id": i} for i in done])
    return [outcome for outcome, _, _, _ in routes]


def renew_leases(tx: Tx, leases: Sequence[tuple[int, str]], lease_seconds: float) -> list[bool]:
    """See :meth:`perdure.store.base.Store.renew_activity_leases`."""
    expires_at = tx.now + lease_seconds
    return [
        tx.conn.execute(
            Q.renew_activity_lease,
            {"task_row_id": row_id, "token": token, "expires_at": expires_at},
        ).rowcount
        == 1
        for row_id, token in leases
    ]


def abandon(tx: Tx, task_row_id: int, token: str, retry_after: float) -> None:
    """See :meth:`perdure.store.base.Store.abandon_activity`."""
    released = tx.conn.execute(
        Q.abandon_activity,
        {"task_row_id": task_row_id, "token": token, "visible_at": tx.now + max(0.0, retry_after)},
    ).rowcount
    if not released:
        raise LeaseLost(f"the lease on activity task {task_row_id} is no longer held by this token")
    if retry_after <= 0:
        tx.notify(ACTIVITIES)
