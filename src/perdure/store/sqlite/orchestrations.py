"""The orchestration side of the SQLite store: locking instances with their messages,
committing turns, abandoning and renewing leases.

Every function runs inside a write transaction (:class:`Tx`) opened by the store, so each
is atomic; fencing is a comparison of the caller's token with the lease row, made in the
same transaction as the writes it guards.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from perdure.core.failure import Failure
from perdure.core.history import (
    DiscardReason,
    ExecutionStarted,
    HistoryEvent,
    ParentRef,
    SubOrchestrationFailed,
    dumps_event,
)
from perdure.errors import LeaseLost
from perdure.store.base import (
    ChildStart,
    DeadLetterReason,
    OrchestrationWorkItem,
    Outcome,
    QueuedMessage,
    TurnCommit,
)
from perdure.store.common.encode import PreparedTurn, QueueOptions, instance_after_turn
from perdure.store.common.routing import route_messages
from perdure.store.common.rows import (
    TERMINAL,
    decode_deliveries,
    decode_history,
    event_row,
    json_list,
    lease_tokens,
    locked_instance_from_row,
    new_instance_params,
    payload,
    task_event,
)
from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS
from perdure.store.sqlite.queries import Q
from perdure.store.sqlite.tx import RoundLease, Tx

# --- locking -----------------------------------------------------------------------------


def lock_orchestrations(
    tx: Tx,
    options: QueueOptions,
    owner: str,
    *,
    lease_seconds: float,
    limit: int,
    names: Collection[str] | None,
    known_history: Mapping[str, tuple[int, int]] | None,
    instance_ids: Collection[str] | None,
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
    }
    while len(items) < limit:
        params["limit"] = limit - len(items)
        params["scan"] = max(64, 8 * params["limit"])
        candidates = tx.conn.execute(Q.orchestration_candidates, params).fetchall()
        if not candidates:
            break
        items.extend(
            _lock_batch(tx, options, [c["instance_id"] for c in candidates], owner, lease_seconds, known_history, names)
        )
        if len(candidates) < params["limit"] and sum(c["scanned"] for c in candidates) < params["scan"]:
            break  # the scan saw every visible message: there is no other candidate
    # Instances whose only news is a completion this round recorded come after the queue's
    # own candidates (they have waited longer). One that cannot take its completion (leased
    # by someone else, not this worker's) keeps it, to be queued at the end of the round.
    kept = tx.round.completions if tx.round is not None else {}
    tried: set[str] = set()
    while len(items) < limit:
        ids = [iid for iid in kept if iid not in tried][: limit - len(items)]
        if not ids:
            break
        tried.update(ids)
        items.extend(_lock_batch(tx, options, ids, owner, lease_seconds, known_history, names))
    return items


def lock_new_instance(
    tx: Tx, options: QueueOptions, start: dict[str, Any], owner: str, lease_seconds: float
) -> list[OrchestrationWorkItem]:
    """Lock an instance this round's transaction has just inserted, whose start message
    (``start``: its ``insert_message`` parameters) is not queued yet.

    The usual case, a start due now and nothing queued for the id, needs no message row:
    the start is handed to the turn directly, as a round hands over a completion
    (:class:`RoundState`). Otherwise the start is queued and the instance locked as usual,
    so that messages queued before the instance existed come after its start, in order.
    """
    iid = start["instance_id"]
    if start["visible_at"] > tx.now or tx.conn.execute(Q.has_messages, {"instance_id": iid}).fetchone():
        tx.conn.execute(Q.insert_message, start)
        return lock_orchestrations(
            tx,
            options,
            owner,
            lease_seconds=lease_seconds,
            limit=1,
            names=None,
            known_history=None,
            instance_ids=[iid],
        )
    assert tx.round is not None, "only a round's transaction hands messages over without rows"
    row = tx.conn.execute(Q.get_instance, {"instance_id": iid}).fetchone()
    message = tx.round.message(iid, start["execution_id"], start["event"], tx.now)
    [token] = lease_tokens(1)
    expires_at = tx.now + lease_seconds
    ids = frozenset([message.message_id])
    tx.round.leases[iid] = RoundLease(owner, token, expires_at, lease_seconds, row, ids, {message.message_id: message})
    return [OrchestrationWorkItem(locked_instance_from_row(row), token, expires_at, (message,), (), 0)]


def finish_round(tx: Tx) -> None:
    """The end of a round's writes: what the round still holds in memory is written as it
    would have been without it (:class:`RoundState`). The leases of instances it locked but
    did not commit stand, as lease rows; the completions it kept for turns that did not
    take them are queued as message rows."""
    state = tx.round
    if state is None:
        return
    leases = list(state.leases.values())
    if leases:
        tx.conn.executemany(
            Q.upsert_lease,
            [
                _lease_params(
                    lease.row["instance_id"], lease.owner, lease.token, lease.expires_at, lease.lease_seconds, tx.now
                )
                for lease in leases
            ],
        )
    kept = [m for lease in leases for m in lease.direct.values()]
    kept.extend(m for messages in state.completions.values() for m in messages)
    _queue_completions(tx, kept)
    state.leases.clear()
    state.completions.clear()


def _queue_completions(tx: Tx, messages: Sequence[QueuedMessage]) -> None:
    """Queue as message rows completions a round kept for a turn that will not take them."""
    if messages:
        tx.conn.executemany(
            Q.insert_message,
            [
                message_params(m.instance_id, m.execution_id, type(m.event).__name__, _text(m), tx.now, None)
                for m in messages
            ],
        )
        tx.notify(ORCHESTRATIONS)


def _text(message: QueuedMessage) -> str:
    """A kept completion's stored JSON (always there: it was kept as that text)."""
    return message.event_json if message.event_json is not None else dumps_event(message.event)


def _lock_batch(
    tx: Tx,
    options: QueueOptions,
    instance_ids: list[str],
    owner: str,
    lease_seconds: float,
    known_history: Mapping[str, tuple[int, int]] | None,
    names: Collection[str] | None,
) -> list[OrchestrationWorkItem]:
    """Sort the visible messages of each candidate and lease those with messages to deliver,
    with the completions the round kept for them (see :class:`RoundState`). Candidates are
    independent of each other: what one's sorting writes, another's never reads."""
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
    round_ = tx.round
    for iid in instance_ids:
        row = rows.get(iid)
        if row is not None and row["held_token"] is not None and row["held_until"] > now:
            continue  # leased by someone else (a candidate found by its kept completion alone)
        deliver = _deliverable(tx, options, iid, row, visible[iid])
        if row is None:
            continue
        direct: list[QueuedMessage] = []
        # Only under a lease with no row (a round lease): a row lease's commit checks its
        # messages against the queue's rows.
        if (
            round_ is not None
            and iid in round_.completions
            and row["held_token"] is None
            and (names is None or row["name"] in names)
        ):
            direct = round_.completions.pop(iid)
        if not deliver and not direct:
            continue
        token = next(tokens)
        ids_ = [m.message_id for m in deliver]
        if round_ is not None and row["held_token"] is None:
            round_.leases[iid] = RoundLease(
                owner,
                token,
                expires_at,
                lease_seconds,
                row,
                frozenset(ids_ + [m.message_id for m in direct]),
                {m.message_id: m for m in direct},
            )
        else:  # an expired lease row is replaced: the takeover that fences its holder out
            leases.append(_lease_params(iid, owner, token, expires_at, lease_seconds, now))
        delivered.extend(ids_)
        known = known_history.get(iid) if known_history else None
        history_from, history, history_error = _history_for(conn, row, known)
        items.append(
            OrchestrationWorkItem(
                instance=locked_instance_from_row(row),
                lease_token=token,
                lease_expires_at=expires_at,
                messages=(*deliver, *direct),
                history=history,
                history_from=history_from,
                history_error=history_error,
            )
        )
    if leases:
        conn.executemany(Q.upsert_lease, leases)
    if delivered:
        conn.execute(Q.mark_delivered, {"ids": json.dumps(delivered)})
    return items


def _lease_params(
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
    tx: Tx, options: QueueOptions, instance_id: str, row: sqlite3.Row | None, messages: list[sqlite3.Row]
) -> list[QueuedMessage]:
    """The messages to hand out with the instance; the others are sorted away (deferred,
    dead-lettered, discarded or held), never left visible."""
    if row is None:
        _defer(tx, options, messages, DeadLetterReason.INSTANCE_NOT_FOUND)
        return []
    status = row["status"]
    if status in TERMINAL:
        _discard(tx, [(m, f"instance is {status}") for m in messages], DiscardReason.TERMINAL_INSTANCE)
        return []
    decoded, undecodable = decode_deliveries(messages)
    _dead_letter(tx, undecodable, DeadLetterReason.UNDECODABLE)
    messages = [m for m in messages if m["message_id"] in decoded]
    current = row["execution_id"]
    deliver, stale, future = route_messages(messages, current)
    _discard(tx, stale, DiscardReason.STALE_EXECUTION)
    _defer(tx, options, future, DeadLetterReason.EXECUTION_NOT_FOUND)
    if deliver and row["history_event_count"] == 0:
        deliver = _start_first(tx, options, instance_id, current, deliver)
    return [decoded[m["message_id"]] for m in deliver]


def _start_first(
    tx: Tx, options: QueueOptions, instance_id: str, execution_id: int, deliver: list[sqlite3.Row]
) -> list[sqlite3.Row]:
    """Messages for an execution whose history is still empty: its ``ExecutionStarted`` must
    come first. Without it in view, the others wait for it (held until the start message is
    due, e.g. a scheduled start), or are deferred if there is no start message at all."""
    starts = [m for m in deliver if m["kind"] == ExecutionStarted.__name__]
    if starts:
        return starts + [m for m in deliver if m["kind"] != ExecutionStarted.__name__]
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


def _defer(tx: Tx, options: QueueOptions, messages: Sequence[sqlite3.Row], reason: str) -> None:
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


def _discard(tx: Tx, messages: Sequence[tuple[sqlite3.Row, str | None]], reason: str) -> None:
    """Delete messages with a discard record each."""
    if not messages:
        return
    params = [{"message_id": m["message_id"], "reason": reason, "detail": d, "now": tx.now} for m, d in messages]
    tx.conn.executemany(Q.discard_message, params)
    tx.conn.executemany(Q.delete_message, params)


def _history_for(
    conn: sqlite3.Connection, row: sqlite3.Row, known: tuple[int, int] | None
) -> tuple[int, tuple[HistoryEvent, ...], str | None]:
    """The part of the current execution's history the caller lacks, and the decode error
    if a stored event of it cannot be read."""
    execution_id, count = row["execution_id"], row["history_event_count"]
    start = 0
    if known is not None and known[0] == execution_id and 0 <= known[1] <= count:
        start = known[1]
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
    is on the same execution (invariants 1, 2, 5), and every message it consumed is still
    queued for it (else someone else applied them). All of that is checked for the whole
    wave before anything is written, so a refused turn writes nothing without a savepoint.
    A turn whose instance this same transaction locked (a round) was checked by the lock:
    no other writer can have come between.
    """
    conn = tx.conn
    consumed = [sorted(set(t.commit.consumed) | {mid for mid, _, _ in t.commit.discarded}) for t in turns]
    round_leases = tx.round.leases if tx.round is not None else {}
    held: dict[int, RoundLease] = {}
    others: list[int] = []
    for index, turn in enumerate(turns):
        c = turn.commit
        lease = round_leases.get(c.instance_id)
        if (
            lease is not None
            and lease.token == c.lease_token
            and lease.row["execution_id"] == c.execution_id
            and lease.delivered.issuperset(consumed[index])
        ):
            held[index] = lease
        else:
            others.append(index)
    rows: dict[int, sqlite3.Row] = {index: lease.row for index, lease in held.items()}
    if others:
        ids = json.dumps([turns[i].commit.instance_id for i in others])
        stored = {r["instance_id"]: r for r in conn.execute(Q.instances_with_leases, {"ids": ids})}
        wanted = [mid for i in others for mid in consumed[i]]
        owners = dict(conn.execute(Q.message_owners, {"ids": json.dumps(wanted)}).fetchall()) if wanted else {}
        for index in others:
            c = turns[index].commit
            row = stored.get(c.instance_id)
            if (
                row is not None
                and row["lease_token"] == c.lease_token
                and row["status"] not in TERMINAL
                and row["execution_id"] == c.execution_id
                and all(owners.get(mid) == c.instance_id for mid in consumed[index])
            ):
                rows[index] = row
    ok = sorted(rows)
    if ok:
        direct = {mid: m for i in ok if i in held for mid, m in held[i].direct.items()}
        _write_turns(tx, [(turns[i], rows[i]) for i in ok], [mid for i in ok for mid in consumed[i]], direct)
        _settle_leases(tx, [(turns[i].commit, rows[i], held.get(i), consumed[i]) for i in ok])
    return ok


def _settle_leases(tx: Tx, committed: list[tuple[TurnCommit, sqlite3.Row, RoundLease | None, list[int]]]) -> None:
    """After the turns' writes: release the leases of the turns that release, extend the others
    (a lease this round took and never wrote is written now, if its turn keeps it; the
    completions it handed to a turn that did not consume them are queued)."""
    conn, now = tx.conn, tx.now
    released, extended, kept, unconsumed = [], [], [], []
    for c, row, lease, consumed in committed:
        if lease is not None:
            del tx.round.leases[c.instance_id]  # type: ignore[union-attr]  # a round lease implies a round
            unconsumed.extend(m for mid, m in lease.direct.items() if mid not in consumed)
            if not c.release:
                kept.append(
                    _lease_params(
                        c.instance_id, lease.owner, c.lease_token, now + lease.lease_seconds, lease.lease_seconds, now
                    )
                )
        elif c.release:
            released.append({"instance_id": c.instance_id, "token": c.lease_token})
        else:
            extended.append(
                {"instance_id": c.instance_id, "token": c.lease_token, "expires_at": now + row["lease_seconds"]}
            )
    if released:
        conn.executemany(Q.release_lease, released)
    if extended:
        conn.executemany(Q.extend_lease, extended)
    if kept:
        conn.executemany(Q.upsert_lease, kept)
    _queue_completions(tx, unconsumed)
    gone = [c.instance_id for c, _, _, _ in committed if c.release]
    if gone and conn.execute(Q.any_messages_among, {"ids": json.dumps(gone)}).fetchone():
        tx.notify(ORCHESTRATIONS)  # they have more to do


def _write_turns(
    tx: Tx,
    turns: list[tuple[PreparedTurn, sqlite3.Row]],
    consumed: list[int],
    direct: Mapping[int, QueuedMessage],
) -> None:
    """Write validated turns with one statement per kind of write (leases apart). ``direct``
    are the completions handed to them without a message row (negative ids)."""
    conn, now = tx.conn, tx.now
    # Discard records copy the consumed message rows, so they come before the deletion.
    discards, direct_discards = [], []
    for t, _ in turns:
        iid = t.commit.instance_id
        for mid, reason, detail in t.commit.discarded:
            if mid in direct:
                m = direct[mid]
                direct_discards.append(
                    {
                        "instance_id": iid,
                        "execution_id": m.execution_id,
                        "event": m.event_json,
                        "reason": reason,
                        "detail": detail,
                        "now": now,
                    }
                )
            else:
                discards.append({"message_id": mid, "instance_id": iid, "reason": reason, "detail": detail, "now": now})
    if discards:
        conn.executemany(Q.discard_consumed, discards)
    if direct_discards:
        conn.executemany(Q.insert_discard, direct_discards)
    rows_consumed = [mid for mid in consumed if mid not in direct]
    if rows_consumed:
        conn.execute(Q.delete_messages_by_id, {"ids": json.dumps(rows_consumed)})
    conn.executemany(
        Q.insert_history,
        [
            (t.commit.instance_id, t.commit.execution_id, row["history_event_count"] + i, text)
            for t, row in turns
            for i, text in enumerate(t.events)
        ],
    )
    conn.executemany(Q.update_instance_after_turn, [instance_after_turn(t, row, now) for t, row in turns])
    if any(t.status.is_terminal for t, _ in turns):
        tx.notify(INSTANCES)  # Client.wait waits for an instance to end

    tasks = [
        {
            "instance_id": a.instance_id,
            "execution_id": a.execution_id,
            "task_id": a.task_id,
            "name": a.name,
            "input": text,
            "attempt": a.attempt,
            "now": now,
            "visible_at": now if a.visible_at is None else a.visible_at,
        }
        for t, _ in turns
        for a, text in zip(t.commit.activities, t.activity_inputs, strict=True)
    ]
    if tasks:
        conn.executemany(Q.insert_activity_task, tasks)
        tx.notify(ACTIVITIES)
    messages: list[dict[str, Any]] = []
    for t, row in turns:
        c = t.commit
        messages.extend(
            message_params(m.instance_id, m.execution_id, kind, text, now, m.visible_at)
            for m, (kind, text) in zip(c.messages, t.messages, strict=True)
        )
        for child in c.children:
            messages.extend(_start_child(tx, child))
        if c.continue_as_new:
            messages.extend(_continue_as_new(tx, t, row))
    if messages:
        conn.executemany(Q.insert_message, messages)
        tx.notify(ORCHESTRATIONS)

    for t, _ in turns:
        if t.status.is_terminal:
            _discard_queued_tasks(tx, t.commit.instance_id, f"instance became {t.status.value}")


def message_params(
    instance_id: str,
    execution_id: int | None,
    kind: str,
    text: str,
    now: float,
    visible_at: float | None,
) -> dict[str, Any]:
    """Parameters of the ``insert_message`` query."""
    return {
        "instance_id": instance_id,
        "execution_id": execution_id,
        "kind": kind,
        "event": text,
        "now": now,
        "visible_at": now if visible_at is None else visible_at,
    }


def _start_child(tx: Tx, child: ChildStart) -> list[dict[str, Any]]:
    """Create a sub-orchestration, or tell the parent at once why it cannot (invariant 4).
    Returns the messages to enqueue."""
    now, parent = tx.now, child.parent
    existing = tx.conn.execute(Q.get_instance, {"instance_id": child.instance_id}).fetchone()
    if existing is None:
        input_text = payload(child.input)
        tx.conn.execute(Q.insert_instance, new_instance_params(child.instance_id, child.name, input_text, parent, now))
        start = ExecutionStarted(timestamp=now, name=child.name, input=child.input, execution_id=1, parent=parent)
        return [message_params(child.instance_id, 1, *event_row(start), now, None)]
    started_by = (
        existing["parent_instance_id"],
        existing["parent_execution_id"],
        existing["parent_task_id"],
    )
    if started_by == (parent.instance_id, parent.execution_id, parent.task_id):
        return []  # the same start, redelivered: the child exists already
    failure = Failure(
        "perdure.errors.InstanceExistsError",
        f"cannot start sub-orchestration {child.name!r}: instance id {child.instance_id!r} "
        f"is already used by another instance (orchestration {existing['name']!r}, "
        f"status {existing['status']})",
        non_retryable=True,
    )
    event = SubOrchestrationFailed(timestamp=now, task_id=parent.task_id, failure=failure)
    return [message_params(parent.instance_id, parent.execution_id, *event_row(event), now, None)]


def _continue_as_new(tx: Tx, turn: PreparedTurn, row: sqlite3.Row) -> list[dict[str, Any]]:
    """The messages that open the next execution: its ``ExecutionStarted``, then the carried
    events, all addressed to it."""
    c, now = turn.commit, tx.now
    new_execution = c.execution_id + 1
    parent = None
    if row["parent_instance_id"] is not None:
        parent = ParentRef(row["parent_instance_id"], row["parent_execution_id"], row["parent_task_id"])
    start = ExecutionStarted(
        timestamp=now,
        name=row["name"],
        input=c.continue_as_new_input,
        execution_id=new_execution,
        parent=parent,
    )
    out = [message_params(c.instance_id, new_execution, *event_row(start), now, None)]
    out.extend(message_params(c.instance_id, new_execution, kind, text, now, None) for kind, text in turn.carried)
    return out


def _discard_queued_tasks(tx: Tx, instance_id: str, detail: str) -> None:
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
                "new_token": secrets.token_hex(16),
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
