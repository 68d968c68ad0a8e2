"""The orchestration side of the SQLite store: locking instances with their messages,
committing turns, abandoning and renewing leases.

Every function runs inside a write transaction (:class:`Tx`) opened by the store, so each
is atomic; fencing is a comparison of the caller's token with the lease row, made in the
same transaction as the writes it guards. Which messages a turn gets, in which order, and
what a child start does with a taken id is decided by :mod:`perdure.store.common.routing`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from perdure.core.history import (
    DiscardReason,
    HistoryEvent,
    SubOrchestrationFailed,
    dumps_event,
)
from perdure.errors import LeaseLost
from perdure.store.base import (
    ChildStart,
    DeadLetterReason,
    KnownHistory,
    OrchestrationWorkItem,
    Outcome,
    QueuedMessage,
)
from perdure.store.common.encode import PreparedTurn, StoreOptions, instance_after_turn
from perdure.store.common.queries import edited
from perdure.store.common.rounds import stored_messages
from perdure.store.common.routing import (
    ChildStartRule,
    Discard,
    child_refusal,
    child_start_rule,
    parent_report,
    route_messages,
    start_first,
)
from perdure.store.common.rows import (
    TERMINAL,
    continue_as_new_start,
    decode_deliveries,
    decode_history,
    event_row,
    instance_key,
    json_list,
    lease_tokens,
    locked_instance_from_row,
    new_instance_params,
    new_run_id,
    new_task_params,
    payload,
    task_event,
)
from perdure.store.common.scheduled import scheduled_lease
from perdure.store.common.tokens import random_hex
from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS
from perdure.store.sqlite.queries import Q
from perdure.store.sqlite.tx import Tx

# update_instance_after_turn for a turn that leaves the status as it was: SQLite rewrites
# the entries of every index on a column an UPDATE assigns, even to the value it had, and
# the two indexes on status would add two pages to the commit of nearly every turn.
UPDATE_KEEPING_STATUS = edited(Q.update_instance_after_turn, "status = :status,\n", "")


# --- locking -----------------------------------------------------------------------------


def lock_orchestrations(
    tx: Tx,
    options: StoreOptions,
    owner: str,
    *,
    lease_seconds: float,
    limit: int,
    names: Collection[str] | None,
    known_history: KnownHistory | None,
    instance_ids: Collection[str] | None,
    held: Mapping[str, str] | None = None,
) -> list[OrchestrationWorkItem]:
    """See :meth:`perdure.store.base.Store.lock_orchestrations`.

    Candidates are instances with a visible message and no live lease, oldest visible
    message first. Sorting a candidate's messages either hands it out or removes every one of
    its visible messages from view (discarded, deferred, dead-lettered or held), so asking
    again for more candidates until ``limit`` is reached always terminates. Each batch of
    candidates is read and leased with a fixed number of statements, whatever its size.
    """
    items: list[OrchestrationWorkItem] = []
    params: dict[str, Any] = {
        "now": tx.now,
        "names": json_list(sorted(names) if names is not None else None),
        "instance_ids": json_list(instance_ids),
        "held": json_list(held.values() if held else None),
    }
    while len(items) < limit:
        params["limit"] = limit - len(items)
        params["scan"] = max(64, 8 * params["limit"])
        candidates = tx.conn.execute(Q.orchestration_candidates, params).fetchall()
        if not candidates:
            break
        ids = [c["instance_id"] for c in candidates]
        items.extend(_lock_batch(tx, options, ids, owner, lease_seconds, known_history, names))
        if len(candidates) < params["limit"] and sum(c["scanned"] for c in candidates) < params["scan"]:
            break  # the scan saw every visible message: there is no other candidate
    return items


def _lock_batch(
    tx: Tx,
    options: StoreOptions,
    instance_ids: list[str],
    owner: str,
    lease_seconds: float,
    known_history: KnownHistory | None,
    names: Collection[str] | None,
) -> list[OrchestrationWorkItem]:
    """Sort the visible messages of each candidate and lease those with messages to
    deliver. Candidates are independent of each other: what one's sorting writes, another's
    never reads."""
    conn, now = tx.conn, tx.now
    ids = json.dumps(instance_ids)
    rows = {r["instance_id"]: r for r in conn.execute(Q.instances_among, {"ids": ids})}
    visible: dict[str, list[sqlite3.Row]] = {iid: [] for iid in instance_ids}
    for m in conn.execute(Q.visible_messages_among, {"ids": ids, "now": now}):
        visible[m["instance_id"]].append(m)
    expires_at = now + lease_seconds
    leases: list[dict[str, Any]] = []
    delivered: list[int] = []
    items: list[OrchestrationWorkItem] = []
    tokens = iter(lease_tokens(len(instance_ids)))
    for iid in instance_ids:
        row = rows.get(iid)
        deliver = _deliverable(tx, options, iid, row, visible[iid])
        if row is None or not deliver:
            continue
        if names is not None and instance_key(row) not in names:
            continue  # swept (nothing to deliver can remain), but never taken: invariant 5
        token = next(tokens)
        leases.append(lease_params(iid, owner, token, expires_at, lease_seconds, now))
        delivered.extend(m.message_id for m in deliver)
        known = known_history.get(iid) if known_history else None
        history_from, history, history_error = _history_for(conn, row, known)
        items.append(
            OrchestrationWorkItem(
                instance=locked_instance_from_row(row),
                lease_token=token,
                lease_expires_at=expires_at,
                messages=tuple(deliver),
                history=history,
                history_from=history_from,
                history_error=history_error,
            )
        )
    if leases:  # an expired lease row is replaced: the takeover that fences its holder out
        conn.executemany(Q.upsert_lease, leases)
    if delivered:
        conn.execute(Q.mark_delivered, {"ids": json.dumps(delivered)})
    return items


def lease_params(
    instance_id: str, owner: str, token: str, expires_at: float, lease_seconds: float, now: float
) -> dict[str, Any]:
    """Parameters of the ``upsert_lease`` query."""
    return {
        "instance_id": instance_id,
        "owner": owner,
        "token": token,
        "expires_at": expires_at,
        "lease_seconds": lease_seconds,
        "now": now,
    }


def _deliverable(
    tx: Tx, options: StoreOptions, instance_id: str, row: sqlite3.Row | None, messages: list[sqlite3.Row]
) -> list[QueuedMessage]:
    """The messages to hand out with the instance; the others are sorted away (deferred,
    dead-lettered, discarded or held), never left visible."""
    if row is None:
        _defer(tx, options, messages, DeadLetterReason.INSTANCE_NOT_FOUND)
        return []
    status = row["status"]
    if status in TERMINAL:
        discard(tx, [(m, DiscardReason.TERMINAL_INSTANCE, f"instance is {status}") for m in messages])
        return []
    decoded, undecodable = decode_deliveries(messages)
    _dead_letter(tx, undecodable, DeadLetterReason.UNDECODABLE)
    messages = [m for m in messages if m["message_id"] in decoded]
    current = row["execution_id"]
    deliver, discarded, future = route_messages(messages, current, row["run_id"])
    discard(tx, discarded)
    _defer(tx, options, future, DeadLetterReason.EXECUTION_NOT_FOUND)
    if deliver and row["history_event_count"] == 0:
        deliver = _start_first(tx, options, instance_id, current, deliver)
    return [decoded[m["message_id"]] for m in deliver]


def _start_first(
    tx: Tx, options: StoreOptions, instance_id: str, execution_id: int, deliver: list[sqlite3.Row]
) -> list[sqlite3.Row]:
    """Messages for an execution whose history is still empty: its ``ExecutionStarted`` must
    come first. Without it in view, the others wait for it (held until the start message is
    due, e.g. a scheduled start), or are deferred if there is no start message at all."""
    ordered, started = start_first(deliver)
    if started:
        return ordered
    pending = tx.conn.execute(Q.pending_start, {"instance_id": instance_id, "execution_id": execution_id}).fetchone()
    if pending is not None and pending["visible_at"] is not None:
        tx.conn.execute(
            Q.hold_messages,
            {
                "visible_at": pending["visible_at"],
                "ids": json.dumps([m["message_id"] for m in deliver]),
            },
        )
    else:
        _defer(tx, options, deliver, DeadLetterReason.EXECUTION_NOT_FOUND)
    return []


def _defer(tx: Tx, options: StoreOptions, messages: Sequence[sqlite3.Row], reason: str) -> None:
    """Push undeliverable messages back with exponential backoff; dead-letter those that
    used up their tries. Never deleted without a trace (invariant 3)."""
    if not messages:
        return
    deferred, dead = [], []
    for m in messages:
        tries = m["delivery_count"] + 1
        if tries >= options.max_deliveries:
            dead.append(m)
        else:
            visible_at = tx.now + options.backoff(tries)
            deferred.append({"message_id": m["message_id"], "tries": tries, "visible_at": visible_at})
    tx.conn.executemany(Q.defer_message, deferred)
    _dead_letter(tx, dead, reason)


def _dead_letter(tx: Tx, messages: Sequence[sqlite3.Row], reason: str) -> None:
    """Move messages to the dead letters, where diagnosis and the operator see them."""
    if not messages:
        return
    params = [
        {"message_id": m["message_id"], "reason": reason, "tries": m["delivery_count"] + 1, "now": tx.now}
        for m in messages
    ]
    tx.conn.executemany(Q.dead_letter_message, params)
    tx.conn.executemany(Q.delete_message, params)


def discard(tx: Tx, messages: Sequence[Discard]) -> None:
    """Delete messages with a discard record each."""
    if not messages:
        return
    params = [{"message_id": m["message_id"], "reason": r, "detail": d, "now": tx.now} for m, r, d in messages]
    tx.conn.executemany(Q.discard_message, params)
    tx.conn.executemany(Q.delete_message, params)


def _history_for(
    conn: sqlite3.Connection, row: sqlite3.Row, known: tuple[str | None, int, int] | None
) -> tuple[int, tuple[HistoryEvent, ...], str | None]:
    """The part of the current execution's history the caller lacks (it holds ``known``:
    run, execution and event count), and the decode error if a stored event of it cannot
    be read."""
    execution_id, count = row["execution_id"], row["history_event_count"]
    start = 0
    if known is not None and known[0] == row["run_id"] and known[1] == execution_id and 0 <= known[2] <= count:
        start = known[2]
    if start == count:
        return start, (), None
    rows = conn.execute(
        Q.history_from,
        {"instance_id": row["instance_id"], "execution_id": execution_id, "from_sequence": start},
    ).fetchall()
    return start, *decode_history([r["event"] for r in rows], start, execution_id)


# --- committing turns --------------------------------------------------------------------


def commit_turns(tx: Tx, turns: Sequence[PreparedTurn]) -> list[Outcome]:
    """Commit turns in waves, each instance at most once per wave (a second turn of the same
    instance must see the first one's writes); one outcome per turn, in order."""
    outcomes = [Outcome.LEASE_LOST] * len(turns)
    pending = list(range(len(turns)))
    while pending:
        wave, later, seen = [], [], set()
        for index in pending:
            iid = turns[index].commit.instance_id
            (later if iid in seen else wave).append(index)
            seen.add(iid)
        for index in _commit_wave(tx, [turns[i] for i in wave]):
            outcomes[wave[index]] = Outcome.OK
        pending = later
    return outcomes


def _commit_wave(tx: Tx, turns: list[PreparedTurn]) -> list[int]:
    """Write the turns (of distinct instances) that may commit; return their positions.

    A turn may commit if its token still holds the lease, the instance is not terminal and
    is on the same run and execution (invariants 1, 2, 5, 9), and every message it consumed
    is still queued for it (else someone else applied them). A turn with outcomes handed
    over (:attr:`~perdure.store.base.TurnCommit.handed_over`) also needs each task to hold
    its token, and no queued message for the instance besides those it consumed: those
    came before the outcomes, which are recorded now (invariant 10). All of that is checked
    for the whole wave before anything is written, so a refused turn writes nothing without
    a savepoint.
    """
    conn = tx.conn
    consumed = [
        stored_messages(sorted({*t.commit.consumed, *(mid for mid, _, _ in t.commit.discarded)})) for t in turns
    ]
    ids = json.dumps([t.commit.instance_id for t in turns])
    stored = {r["instance_id"]: r for r in conn.execute(Q.instances_with_leases, {"ids": ids})}
    wanted = [mid for mids in consumed for mid in mids]
    owners = dict(conn.execute(Q.message_owners, {"ids": json.dumps(wanted)}).fetchall()) if wanted else {}
    tokens, queued = _handing_over(tx, turns)
    ok: list[int] = []
    for index, turn in enumerate(turns):
        c = turn.commit
        row = stored.get(c.instance_id)
        if (
            row is not None
            and row["lease_token"] == c.lease_token
            and row["status"] not in TERMINAL
            and row["execution_id"] == c.execution_id
            and (c.run_id is None or row["run_id"] == c.run_id)
            and all(owners.get(mid) == c.instance_id for mid in consumed[index])
            and all(tokens.get(h.task_row_id) == h.lease_token for h in c.handed_over)
            and queued.get(c.instance_id, set()) <= set(consumed[index])
        ):
            ok.append(index)
    if ok:
        write_turns(
            tx, [(turns[i], stored[turns[i].commit.instance_id]) for i in ok], [m for i in ok for m in consumed[i]]
        )
        handed = [{"task_row_id": h.task_row_id} for i in ok for h in turns[i].commit.handed_over]
        if handed:  # recorded by the turn that applied them
            conn.executemany(Q.delete_task, handed)
        _settle_leases(tx, [(turns[i], stored[turns[i].commit.instance_id]) for i in ok])
    return ok


def _handing_over(tx: Tx, turns: list[PreparedTurn]) -> tuple[dict[int, str], dict[str, set[int]]]:
    """For the turns with handed-over outcomes: the lease tokens of their tasks, and the
    due messages queued for their instances (by instance)."""
    handing = [t.commit for t in turns if t.commit.handed_over]
    if not handing:
        return {}, {}
    task_ids = json.dumps([h.task_row_id for c in handing for h in c.handed_over])
    tokens = dict(tx.conn.execute(Q.task_tokens, {"ids": task_ids}).fetchall())
    queued: dict[str, set[int]] = {}
    params = {"ids": json.dumps([c.instance_id for c in handing]), "now": tx.now}
    for iid, mid in tx.conn.execute(Q.visible_message_ids_among, params):
        queued.setdefault(iid, set()).add(mid)
    return tokens, queued


def _settle_leases(tx: Tx, committed: list[tuple[PreparedTurn, sqlite3.Row]]) -> None:
    """After the turns' writes: release the leases of the turns that release, extend those
    that extend theirs; signal the queue if a released instance has messages that came meanwhile."""
    conn, now = tx.conn, tx.now
    released, extended = [], []
    for turn, row in committed:
        c = turn.commit
        if c.release:
            released.append({"instance_id": c.instance_id, "token": c.lease_token})
        elif c.extend_lease:
            extended.append(
                {"instance_id": c.instance_id, "token": c.lease_token, "expires_at": now + row["lease_seconds"]}
            )
    if released:
        conn.executemany(Q.release_lease, released)
    if extended:
        conn.executemany(Q.extend_lease, extended)
    gone = [r["instance_id"] for r in released]
    if gone and conn.execute(Q.any_messages_among, {"ids": json.dumps(gone)}).fetchone():
        tx.notify(ORCHESTRATIONS)  # they have more to do


def write_turns(tx: Tx, turns: list[tuple[PreparedTurn, sqlite3.Row]], consumed: list[int]) -> None:
    """Write validated turns with one statement per kind of write (leases apart)."""
    conn, now = tx.conn, tx.now
    # Discard records copy the consumed message rows, so they come before the deletion.
    discards = [
        {"message_id": mid, "instance_id": t.commit.instance_id, "reason": reason, "detail": detail, "now": now}
        for t, _ in turns
        for mid, reason, detail in t.commit.discarded
    ]
    if discards:
        conn.executemany(Q.discard_consumed, discards)
    if consumed:
        conn.execute(Q.delete_messages_by_id, {"ids": json.dumps(consumed)})
    conn.executemany(
        Q.insert_history,
        [
            (t.commit.instance_id, t.commit.execution_id, row["history_event_count"] + i, text)
            for t, row in turns
            for i, text in enumerate(t.events)
        ],
    )
    changed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for t, row in turns:
        params = instance_after_turn(t, row, now)
        (kept if params["status"] == row["status"] else changed).append(params)
    if changed:
        conn.executemany(Q.update_instance_after_turn, changed)
    if kept:
        conn.executemany(UPDATE_KEEPING_STATUS, kept)
    for t, _ in turns:
        if t.status.is_terminal:
            tx.instance_ended(t.commit.instance_id)

    tasks: list[dict[str, Any]] = []
    for t, _ in turns:
        for task, text in zip(t.commit.activities, t.activity_inputs, strict=True):
            params = {**new_task_params(task, text, now), "now": now}
            lease = scheduled_lease(tx.scheduled, task, ending=t.status.is_terminal)
            if lease is None:
                tasks.append(params)
            else:
                _insert_taken_task(tx, {**params, **lease})
    if tasks:
        conn.executemany(Q.insert_activity_task, tasks)
        tx.notify(ACTIVITIES)
    messages: list[dict[str, Any]] = []
    for t, row in turns:
        c = t.commit
        messages.extend(
            message_params(m.instance_id, m.run_id, m.execution_id, kind, text, now, m.visible_at)
            for m, (kind, text) in zip(c.messages, t.messages, strict=True)
        )
        report = parent_report(c, row, now)
        if report is not None:
            messages.append(
                message_params(
                    report.instance_id, report.run_id, report.execution_id, *event_row(report.event), now, None
                )
            )
        for child in c.children:
            messages.extend(_start_child(tx, child))
        if c.continue_as_new:
            messages.append(_continue_as_new(tx, t, row))
    if messages:
        conn.executemany(Q.insert_message, messages)
        tx.notify(ORCHESTRATIONS)

    for t, _ in turns:
        if t.status.is_terminal:
            discard_queued_tasks(tx, t.commit.instance_id, f"instance became {t.status.value}")


def _insert_taken_task(tx: Tx, params: dict[str, Any]) -> None:
    """Write a task locked for the round's worker (:attr:`Tx.scheduled`), and hand its row over."""
    assert tx.scheduled is not None
    task_row_id = tx.conn.execute(Q.insert_locked_activity_task, params).lastrowid
    row = {**params, "task_row_id": task_row_id, "enqueued_at": params["now"]}
    tx.scheduled.add_rows(lambda: [row])


def message_params(
    instance_id: str,
    run_id: str | None,
    execution_id: int | None,
    kind: str,
    text: str,
    now: float,
    visible_at: float | None,
) -> dict[str, Any]:
    """Parameters of the ``insert_message`` query."""
    return {
        "instance_id": instance_id,
        "run_id": run_id,
        "execution_id": execution_id,
        "kind": kind,
        "event": text,
        "now": now,
        "visible_at": now if visible_at is None else visible_at,
    }


def first_request(tx: Tx, request_id: str | None, operation: str, instance_id: str) -> bool:
    """Record a client operation's request id; False if it was recorded before (the
    operation was applied already and must not be applied again). No id: always True."""
    if request_id is None:
        return True
    params = {"request_id": request_id, "operation": operation, "instance_id": instance_id, "now": tx.now}
    return tx.conn.execute(Q.insert_request, params).rowcount == 1


def insert_instance(tx: Tx, params: dict[str, Any]) -> None:
    """Insert a new instance row (``new_instance_params``)."""
    tx.conn.execute(Q.insert_instance, params)


def retire_run(tx: Tx, row: sqlite3.Row) -> int:
    """Make way for a new run of a terminal instance's id (a ``replace_terminal`` start, a
    retried child): its row and lease go, the messages still queued for it are discarded
    with a record (``stale_run``: none of them may reach the new run, invariant 9), and its
    history stays readable under its executions. Returns the new run's first execution
    (executions are numbered across the runs of an id, so the old ones keep theirs)."""
    key = {"instance_id": row["instance_id"]}
    queued = tx.conn.execute(Q.messages_of_instance, key).fetchall()
    detail = f"queued for run {row['run_id'][:8]}, which had ended, when the id was given a new run"
    discard(tx, [(m, DiscardReason.STALE_RUN, detail) for m in queued])
    ids = {"ids": json.dumps([row["instance_id"]])}
    tx.conn.execute(Q.delete_leases, ids)
    tx.conn.execute(Q.delete_instances, ids)
    tx.notify(INSTANCES)  # the ended run is gone, as if purged: a row it handed over is out of date
    forget_executions(tx, row["instance_id"], row["execution_id"] + 1)
    return int(row["execution_id"]) + 1


def _start_child(tx: Tx, child: ChildStart) -> list[dict[str, Any]]:
    """Create a sub-orchestration, or tell the parent at once why it cannot (invariant 4,
    :func:`perdure.store.common.routing.child_start_rule`). Returns the messages to
    enqueue."""
    now, parent = tx.now, child.parent
    existing = tx.conn.execute(Q.get_instance, {"instance_id": child.instance_id}).fetchone()
    rule = child_start_rule(existing, child)
    if rule is ChildStartRule.EXISTS:
        return []  # the same start, redelivered: the child exists already
    if rule is ChildStartRule.REFUSE:
        event = SubOrchestrationFailed(timestamp=now, task_id=parent.task_id, failure=child_refusal(existing, child))
        return [message_params(parent.instance_id, parent.run_id, parent.execution_id, *event_row(event), now, None)]
    execution = retire_run(tx, existing) if rule is ChildStartRule.REPLACE else 1
    run_id = child.run_id or new_run_id()
    text = payload(child.input)
    params = new_instance_params(child.instance_id, child.name, text, parent, now, run_id, execution, child.version)
    insert_instance(tx, params)
    start = child.start_event(run_id, execution, now)
    return [message_params(child.instance_id, run_id, execution, *event_row(start), now, None)]


def _continue_as_new(tx: Tx, turn: PreparedTurn, row: sqlite3.Row) -> dict[str, Any]:
    """The message that opens the next execution: its ``ExecutionStarted``, of the same run,
    with the messages it takes first. The history of executions beyond the retention is
    deleted, with their discard records."""
    c, now = turn.commit, tx.now
    new_execution = c.execution_id + 1
    forget_executions(tx, c.instance_id, new_execution)
    start = continue_as_new_start(c, row, now)
    return message_params(c.instance_id, row["run_id"], new_execution, *event_row(start), now, None)


def forget_executions(tx: Tx, instance_id: str, current: int) -> None:
    """Retention: delete the history and discard records of the executions of an instance
    that are more than the store's ``keep_executions`` before ``current``, its new current
    execution."""
    keep = tx.options.keep_executions
    if keep is None:
        return
    up_to = current - 1 - keep
    if up_to >= 1:
        params = {"instance_id": instance_id, "up_to": up_to}
        tx.conn.execute(Q.forget_history, params)
        tx.conn.execute(Q.forget_discards, params)


def discard_queued_tasks(tx: Tx, instance_id: str, detail: str) -> None:
    """A terminal instance's queued activity tasks will never be needed: remove those no
    live worker holds, each with a discard record (a held one is discarded on completion)."""
    rows = tx.conn.execute(Q.unlocked_tasks_of_instance, {"instance_id": instance_id, "now": tx.now}).fetchall()
    if not rows:
        return
    tx.conn.executemany(
        Q.insert_discard,
        [
            {
                "instance_id": r["instance_id"],
                "run_id": r["run_id"],
                "execution_id": r["execution_id"],
                "event": dumps_event(task_event(r)),
                "reason": DiscardReason.TERMINAL_INSTANCE,
                "detail": detail,
                "now": tx.now,
            }
            for r in rows
        ],
    )
    tx.conn.executemany(Q.delete_task, [{"task_row_id": r["task_row_id"]} for r in rows])


# --- leases ------------------------------------------------------------------------------


def abandon(tx: Tx, instance_id: str, token: str, retry_after: float) -> None:
    """See :meth:`perdure.store.base.Store.abandon_orchestration`. With ``retry_after`` the
    lease is kept under a token nobody holds until then (delaying the queued messages
    instead would let a message enqueued later overtake them)."""
    if retry_after > 0:
        released = tx.conn.execute(
            Q.hold_lease,
            {
                "instance_id": instance_id,
                "token": token,
                "new_token": random_hex(16),
                "expires_at": tx.now + retry_after,
            },
        ).rowcount
    else:
        released = tx.conn.execute(Q.release_lease, {"instance_id": instance_id, "token": token}).rowcount
    if not released:
        raise LeaseLost(f"the lease on instance {instance_id!r} is no longer held by this token")
    if retry_after <= 0:
        tx.notify(ORCHESTRATIONS)


def renew(tx: Tx, instance_id: str, token: str, lease_seconds: float) -> float:
    """See :meth:`perdure.store.base.Store.renew_orchestration_lease`."""
    expires_at = tx.now + lease_seconds
    renewed = tx.conn.execute(
        Q.renew_lease,
        {
            "instance_id": instance_id,
            "token": token,
            "expires_at": expires_at,
            "lease_seconds": lease_seconds,
        },
    ).rowcount
    if not renewed:
        raise LeaseLost(f"the lease on instance {instance_id!r} is no longer held by this token")
    return expires_at
