"""The orchestration side of the PostgreSQL store: locking instances with their messages,
committing turns, abandoning and renewing leases. The semantics are the SQLite store's
(:mod:`perdure.store.sqlite.orchestrations`; the rules both share are in
:mod:`perdure.store.common`); what differs is how many workers on many hosts are kept from
deciding about the same instance at once.

Locks, always taken in this order so that no two transactions wait on each other:

1. the instance row (``FOR UPDATE``): held by whoever decides about the instance.
   ``lock_orchestrations`` takes it with ``SKIP LOCKED``, so workers never queue behind each
   other; ``commit_turns`` (in instance id order), ``create_instance`` and purges wait for it.
   An instance that does not exist has no row: its id is locked with a transaction-level
   advisory lock instead, by its creators (wait) and by the sweep of messages addressed to
   it (try, skip if taken);
2. the lease row (``FOR UPDATE``; ``SKIP LOCKED`` when locking): its holder's renewals,
   commits and abandons, fenced by the token, lock only this row;
3. message and task rows.

Every decision is made on locked rows: under READ COMMITTED a locked row is re-read at its
latest committed version, so no decision rests on a stale snapshot.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
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
    TurnCommit,
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
from perdure.store.postgres.connection import Answer, Tx, bigint_array, text_array
from perdure.store.postgres.listen import channels
from perdure.store.postgres.queries import Q

__all__ = [
    "Outbox",
    "abandon",
    "commit_turns",
    "lock_orchestrations",
    "renew",
    "send_due_times",
    "send_request",
]

Row = dict[str, Any]


def with_next_message_at(sql: str) -> str:
    """``sql`` with its ``(next_message_at)`` made the query of that name (a subquery): the
    rule of the next due message is written once."""
    return edited(sql, "(next_message_at)", f"({Q.next_message_at})")


DUE_TIMES = with_next_message_at(Q.due_times)
# The group write without and with its own checks (``write_plain_turns``' ``%(check)s``):
# two statements, each with one plan. As a parameter, the flag would have the server plan
# the statement anew at every call (a plan made for FALSE leaves the checks out, and is
# then always cheaper than the one plan for both). The same for a group of one turn
# (``write_one_turn``), by (checked, one turn).
GROUP_WRITES = {
    (False, False): edited(Q.write_plain_turns, "%(check)s", "FALSE"),
    (True, False): edited(Q.write_plain_turns, "%(check)s", "TRUE"),
    (False, True): edited(Q.write_one_turn, "%(check)s", "FALSE"),
    (True, True): edited(Q.write_one_turn, "%(check)s", "TRUE"),
}
#: Whether a group of one turn is written by ``write_one_turn`` (a test writes it the
#: other way too, to run every check through both statements).
ONE_TURN_STATEMENT = True
#: The parts of the group write a group may have nothing for (a part with nothing to do
#: still costs the server to start and run it: about a tenth of the statement; an insert
#: into a table opens every index of the table first, rows or none).
OPTIONAL_WRITES = ("consumed", "messages", "released", "extended", "tasks", "handed")
#: The answer of a group write with no ``tasks`` part: the checks, and the one row of
#: NULLs that a group write whose tasks are none taken answers.
NO_TASKS_ANSWER = "SELECT NULL::bigint AS task_row_id FROM (SELECT count(refusal) FROM refused) AS checked"


#: The checks of a checked group write that only some turns need, by the part that needs
#: them: the consumed messages still queued; the handed-over tasks still held, and no
#: message due before their outcomes; an ending turn's instance free of a parent and of
#: queued tasks. A check no turn of the group needs is written out of the statement (each
#: is a subplan the server would start for every turn).
OPTIONAL_CHECKS = ("consumed", "handed", "ended")


#: The answer of the write of a started turn (:func:`group_write`): no checks to read.
STARTED_ANSWERS = {
    True: "SELECT tasks.* FROM tasks WHERE tasks.lease_token IS NOT NULL",
    False: "SELECT NULL::bigint AS task_row_id",
}


@functools.cache
def group_write(check: bool, parts: frozenset[str], *, one_turn: bool = False, started: bool = False) -> str:
    """The group write (with its checks or not; of one turn, or of any number) with only
    the optional ``parts`` given: the writes of :data:`OPTIONAL_WRITES` and, checked, the
    checks of :data:`OPTIONAL_CHECKS`. One prepared statement per combination in use.
    ``started``: the first turn of a run this transaction inserted as the turn leaves it
    (``insert_started_instance``), which ``write_one_turn`` neither checks nor updates, and
    whose lease went in with the transaction: its history and the rest only."""
    sql = GROUP_WRITES[check, one_turn]
    for part in OPTIONAL_CHECKS:
        sql = edited(sql, f"%({part}_check)s", "TRUE" if check and part in parts else "FALSE")
    # "WITH refused AS (...", "), consumed AS (...", ..., "), handed AS (...", ")\nSELECT ...":
    # the parts, then the answer (the statement's last SELECT).
    body, answer = sql.rsplit("\n)\nSELECT ", 1)
    ctes = re.split(r"(?m)^(?=\), \w+ AS )", body)
    dropped = set(OPTIONAL_WRITES) - parts
    if started:
        assert one_turn, "a started turn is written alone"
        dropped |= {"refused", "instance", "extended"}
    kept = "".join(cte for cte in ctes if cte.split(maxsplit=2)[1] not in dropped).rstrip("\n")
    if started:
        # The row holds the turn's events already; the history before them is none.
        kept = "WITH " + edited(kept, "i.history_event_count + e.n - 1", "e.n - 1").removeprefix("), ")
        return f"{kept}\n)\n{STARTED_ANSWERS['tasks' in parts]}"
    return f"{kept}\n)\n" + (f"SELECT {answer}" if "tasks" in parts else NO_TASKS_ANSWER)


class Outbox:
    """Messages to enqueue, written in one statement in the order they were added."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget the queued messages."""
        self.instance_ids: list[str] = []
        self.run_ids: list[str | None] = []
        self.execution_ids: list[int | None] = []
        self.kinds: list[str] = []
        self.events: list[str] = []
        self.visible_ats: list[float] = []

    def add(
        self,
        instance_id: str,
        run_id: str | None,
        execution_id: int | None,
        kind: str,
        text: str,
        now: float,
        visible_at: float | None,
    ) -> None:
        """Queue one message (``visible_at`` None: now)."""
        self.instance_ids.append(instance_id)
        self.run_ids.append(run_id)
        self.execution_ids.append(execution_id)
        self.kinds.append(kind)
        self.events.append(text)
        self.visible_ats.append(now if visible_at is None else visible_at)

    def flush(self, tx: Tx) -> int:
        """Insert the queued messages; return how many."""
        count = len(self.events)
        if count:
            tx.run(
                Q.insert_messages,
                {
                    "now": tx.now,
                    "instance_ids": self.instance_ids,
                    "run_ids": self.run_ids,
                    "execution_ids": self.execution_ids,
                    "kinds": self.kinds,
                    "events": self.events,
                    "visible_ats": self.visible_ats,
                },
            )
            tx.notify(ORCHESTRATIONS)
            self.clear()
        return count


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
    message first. Each candidate is looked at once per call (``exclude``): it is handed
    out, sorted away, or skipped because another worker is deciding about it right now.
    A batch of candidates is locked with a few statements, whatever its size.
    """
    items: list[OrchestrationWorkItem] = []
    tried: list[str] = []
    params: dict[str, Any] = {
        "now": tx.now,
        "names": text_array(sorted(names) if names is not None else None),
        "instance_ids": text_array(instance_ids),
        "held": text_array(held.values() if held else None),
    }
    while len(items) < limit:
        params["limit"] = limit - len(items)
        params["exclude"] = text_array(tried)
        found = tx.all(Q.lock_candidates, params)
        tried.extend(c["candidate"] for c in found)
        items.extend(_lock_instances(tx, options, found, owner, lease_seconds, known_history or {}, names, held or {}))
        if len(found) < params["limit"]:
            break  # that was every candidate
    return items


def _lock_instances(
    tx: Tx,
    options: StoreOptions,
    found: list[Row],
    owner: str,
    lease_seconds: float,
    known_history: KnownHistory,
    names: Collection[str] | None,
    held: Mapping[str, str],
) -> list[OrchestrationWorkItem]:
    """Of the candidates ``found`` (``lock_candidates`` rows, in their order), those whose
    rows this transaction locked: sort their messages, and lease those with messages to
    deliver. The messages of a candidate that does not exist are swept."""
    if not found:
        return []
    tx.queues_changed += 1
    candidates = [c["candidate"] for c in found]
    rows = {c["candidate"]: c for c in found if c["instance_id"] is not None}
    for c in found:
        if c["instance_id"] is None and not c["present"]:
            _sweep_missing_instance(tx, options, c["candidate"])
        # else another worker is deciding about it
    if not rows:
        return []
    ids = list(rows)
    # Both sent before either is read: one round trip. The messages are read under the
    # instances' row locks either way; those of an instance whose lease is in use stay put.
    leases = tx.run(Q.try_lock_leases, {"ids": text_array(ids)})
    queued = tx.run(Q.visible_messages, {"ids": text_array(ids), "now": tx.now})
    free = {lease["instance_id"] for lease in leases.fetchall() if _lease_free(lease, tx.now, held)}
    messages: dict[str, list[Row]] = {}
    for m in queued.fetchall():
        messages.setdefault(m["instance_id"], []).append(m)

    taken: list[tuple[Row, list[QueuedMessage]]] = []
    for iid in candidates:
        if iid in free:
            row = rows[iid]
            deliver = _deliverable(tx, options, row, messages.get(iid, []))
            # Never taken under another name, whatever brought its messages (invariant 5).
            if deliver and (names is None or instance_key(row) in names):
                taken.append((row, deliver))
    if not taken:
        return []
    tokens = lease_tokens(len(taken))
    expires_at = tx.now + lease_seconds
    tx.run(
        Q.upsert_leases,
        {
            "instance_ids": text_array([row["instance_id"] for row, _ in taken]),
            "tokens": text_array(tokens),
            "owner": owner,
            "expires_at": expires_at,
            "lease_seconds": lease_seconds,
            "now": tx.now,
        },
    )
    tx.run(Q.mark_delivered, {"ids": bigint_array([m.message_id for _, deliver in taken for m in deliver])})
    histories = [_send_history(tx, row, known_history.get(row["instance_id"])) for row, _ in taken]
    items = []
    for (row, deliver), token, (history_from, sent) in zip(taken, tokens, histories, strict=True):
        history, history_error = _read_history(row, history_from, sent)
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
    return items


def _lease_free(lease: Row, now: float, held: Mapping[str, str]) -> bool:
    """Whether an instance's lease (a ``try_lock_leases`` row) lets it be taken: no lease,
    or an expired one, or the caller's own (``held``), which this transaction now holds
    locked."""
    if lease["token"] is None:
        return not lease["present"]  # present but not locked: its holder is writing under it
    if held.get(lease["instance_id"]) == lease["token"]:
        return True
    return lease["expires_at"] <= now  # else leased since the candidates were listed


def _deliverable(tx: Tx, options: StoreOptions, row: Row, messages: list[Row]) -> list[QueuedMessage]:
    """The messages of a locked instance to hand to its turn; the others are discarded,
    deferred or dead-lettered here (invariants 3, 4, 5, 9)."""
    instance_id, status = row["instance_id"], row["status"]
    if status in TERMINAL:
        discard(tx, instance_id, [(m, DiscardReason.TERMINAL_INSTANCE, f"instance is {status}") for m in messages])
        return []
    decoded, undecodable = decode_deliveries(messages)
    _dead_letter(tx, undecodable, DeadLetterReason.UNDECODABLE)
    messages = [m for m in messages if m["message_id"] in decoded]
    current = row["execution_id"]
    deliver, discarded, future = route_messages(messages, current, row["run_id"])
    discard(tx, instance_id, discarded)
    _defer(tx, options, future, DeadLetterReason.EXECUTION_NOT_FOUND)
    if deliver and row["history_event_count"] == 0:
        deliver = _start_first(tx, options, instance_id, current, deliver)
    return [decoded[m["message_id"]] for m in deliver]


def _sweep_missing_instance(tx: Tx, options: StoreOptions, instance_id: str) -> None:
    """Defer the visible messages of an instance that does not exist (invariant 3), unless
    it is being created right now (its id lock is taken): then it is left for the next
    call. The existence check after taking the id lock sees every committed creation."""
    key = {"instance_id": instance_id}
    locked = tx.one(Q.try_lock_instance_id, key)
    if not (locked and locked["locked"]) or tx.one(Q.instance_exists, key) is not None:
        return
    messages = tx.all(Q.visible_messages, {"ids": [instance_id], "now": tx.now})
    _defer(tx, options, messages, DeadLetterReason.INSTANCE_NOT_FOUND)


def _start_first(tx: Tx, options: StoreOptions, instance_id: str, execution_id: int, deliver: list[Row]) -> list[Row]:
    """Messages for an execution whose history is still empty: its ``ExecutionStarted`` must
    come first. Without it in view, the others wait for it (held until the start message is
    due, e.g. a scheduled start), or are deferred if there is no start message at all."""
    ordered, started = start_first(deliver)
    if started:
        return ordered
    pending = tx.one(Q.pending_start, {"instance_id": instance_id, "execution_id": execution_id})
    if pending is not None and pending["visible_at"] is not None:
        tx.run(
            Q.hold_messages,
            {"visible_at": pending["visible_at"], "ids": [m["message_id"] for m in deliver]},
        )
    else:
        _defer(tx, options, deliver, DeadLetterReason.EXECUTION_NOT_FOUND)
    return []


def _defer(tx: Tx, options: StoreOptions, messages: Sequence[Row], reason: str) -> None:
    """Push undeliverable messages back with exponential backoff; dead-letter those that
    used up their tries. Never deleted without a trace (invariant 3)."""
    deferred: dict[str, list[Any]] = {"ids": [], "tries": [], "visible_ats": []}
    dead: list[Row] = []
    for m in messages:
        tries = m["delivery_count"] + 1
        if tries >= options.max_deliveries:
            dead.append(m)
        else:
            deferred["ids"].append(m["message_id"])
            deferred["tries"].append(tries)
            deferred["visible_ats"].append(tx.now + options.backoff(tries))
    if deferred["ids"]:
        tx.run(Q.defer_messages, deferred)
    _dead_letter(tx, dead, reason)


def _dead_letter(tx: Tx, messages: Sequence[Row], reason: str) -> None:
    """Move messages to the dead letters, where diagnosis and the operator see them."""
    if messages:
        ids = [m["message_id"] for m in messages]
        tries = [m["delivery_count"] + 1 for m in messages]
        tx.run(Q.dead_letter_messages, {"ids": ids, "tries": tries, "reason": reason, "now": tx.now})


def discard(tx: Tx, instance_id: str, messages: Sequence[Discard]) -> None:
    """Delete messages with a discard record each."""
    if messages:
        tx.run(
            Q.discard_messages,
            {
                "instance_id": instance_id,
                "ids": [m["message_id"] for m, _, _ in messages],
                "reasons": [reason for _, reason, _ in messages],
                "details": [detail for _, _, detail in messages],
                "now": tx.now,
            },
        )


def _send_history(tx: Tx, row: Row, known: tuple[str | None, int, int] | None) -> tuple[int, Answer | None]:
    """Send the read of the part of the current execution's history the caller lacks (none
    if it lacks nothing): where that part starts, and the cursor to read it from."""
    execution_id, count = row["execution_id"], row["history_event_count"]
    start = 0
    if known is not None and known[0] == row["run_id"] and known[1] == execution_id and 0 <= known[2] <= count:
        start = known[2]
    if start == count:
        return start, None
    params = {"instance_id": row["instance_id"], "execution_id": execution_id, "from_sequence": start}
    return start, tx.run(Q.history_from, params)


def _read_history(row: Row, start: int, sent: Answer | None) -> tuple[tuple[HistoryEvent, ...], str | None]:
    """The events sent for by :func:`_send_history`, and the decode error if a stored event
    of them cannot be read."""
    if sent is None:
        return (), None
    return decode_history([r["event"] for r in sent.fetchall()], start, row["execution_id"])


def send_due_times(tx: Tx, last: bool, *, horizon: float = math.inf) -> Callable[[], tuple[float | None, float | None]]:
    """Send the read of the next due message and task (``due_times``); return its reader.
    Sent before the round locks orchestrations, it is read with the candidates; if locking
    them changed the queues (leases taken, messages sorted), it is read again.

    As the round's ``last`` statement (it locks no orchestrations), it also sends the
    NOTIFY of the queues the round wrote to that hold work due now, and of the other topics
    it signals (an instance that ended), so that the answer can be read after the COMMIT
    (the NOTIFYs after it are unneeded). ``horizon``: see ``RoundRequest.due_within``."""
    params = due_times_params(tx, last, horizon)
    return due_times_reader(tx, last, tx.run(DUE_TIMES, params), params)


def due_times_params(tx: Tx, last: bool, horizon: float) -> dict[str, Any]:
    """The parameters of ``due_times`` (and of the statements that include it): as the
    round's ``last`` statement, it sends the NOTIFYs of the topics signalled so far."""
    governed = set(tx.topics) if last and tx.sender is not None else set()
    tx.notified |= governed
    return {"channels": text_array(channels(governed)), "sender": tx.sender, "now": tx.now, "horizon": horizon}


def due_times_reader(
    tx: Tx, last: bool, answer: Answer, params: dict[str, Any]
) -> Callable[[], tuple[float | None, float | None]]:
    """The reader of the due times in ``answer`` (its first row), sent with ``params``:
    unless it was the ``last`` statement, they are read again (``due_times`` alone) if the
    queues changed after it was sent."""
    if last:
        return lambda: _due(answer)
    sent_at = tx.queues_changed
    return lambda: _due(answer if tx.queues_changed == sent_at else tx.run(DUE_TIMES, params))


def _due(cursor: Answer) -> tuple[float | None, float | None]:
    row = cursor.fetchone()
    assert row is not None
    return row["next_message_at"], row["next_task_at"]


# --- committing turns --------------------------------------------------------------------


def commit_turns(
    tx: Tx, turns: Sequence[PreparedTurn], *, inserted: bool = False, started: bool = False
) -> list[Outcome]:
    """Commit turns; one outcome per turn, in the given order.

    Every committing instance is locked in one statement, in instance id order (so two
    group commits never wait on each other), with its lease; a turn may commit if its token
    still holds the lease, the instance is not terminal and still on the turn's run and
    execution, and every message it consumed is still queued for it (invariants 1, 2, 5,
    9). Everything is checked before anything is written, with two reads sent together (one
    round trip). The plain turns are written together (:class:`GroupWrite`), the others one
    by one. Two turns of the same instance in one call commit in turn: the second is
    checked against the first one's writes.

    In an optimistic transaction (:attr:`Tx.optimistic`), turns that are all plain, of
    distinct instances and none of them ending its instance are committed without reading
    anything: the group's statement checks them itself, and fails the transaction
    (:class:`~perdure.store.postgres.connection.ChecksRefused`) if one fails a check.
    ``inserted``: the instances are this transaction's own inserts (an eager start of a
    generated id), which no other transaction sees: an optimistic commit does not lock them.
    ``started``: the one turn is the first of a run this transaction inserted as the turn
    leaves it (``insert_started_instance``), committed optimistically: only its history and
    the rest are written, unchecked (:func:`group_write`).
    """
    assert not started or (inserted and len(turns) == 1), "a started turn is one of an inserted row"
    if commits_optimistically(tx, turns):
        if not inserted:  # rows this transaction inserted are its own: no other can lock them
            tx.run(Q.lock_committing_only, {"ids": text_array(sorted(t.commit.instance_id for t in turns))})
        # The server begins and takes the locks while the group's statement is built.
        tx.send_ahead()
        group = GroupWrite(check=True, started=started)
        for turn in turns:
            group.add(tx, turn, None)
        group.send(tx)
        return [Outcome.OK] * len(turns)
    assert not started, "a started turn is committed optimistically"
    outcomes: list[Outcome] = [Outcome.LEASE_LOST] * len(turns)
    pending = list(range(len(turns)))
    while pending:
        wave: list[int] = []
        later: list[int] = []
        seen: set[str] = set()
        for index in pending:
            iid = turns[index].commit.instance_id
            (later if iid in seen else wave).append(index)
            seen.add(iid)
        ids = sorted({turns[i].commit.instance_id for i in wave})
        consumed = {i: _consumed(turns[i]) for i in wave}
        handing = [turns[i].commit for i in wave if turns[i].commit.handed_over]
        # Sent together, run in order: the checks after the lock see what committed before it.
        locked = tx.run(Q.lock_committing, {"ids": text_array(ids)})
        checks = tx.run(
            Q.commit_checks,
            {
                "ids": text_array(ids),
                "consumed": bigint_array([mid for mids in consumed.values() for mid in mids]),
                "tasks": bigint_array([h.task_row_id for c in handing for h in c.handed_over]),
                "handing": text_array([c.instance_id for c in handing]),
                "now": tx.now,
            },
        )
        rows = {r["instance_id"]: r for r in locked.fetchall()}
        held, owners, task_tokens, visible = _read_checks(checks)
        group = GroupWrite(check=False)
        for index in wave:
            turn = turns[index]
            row, lease = rows.get(turn.commit.instance_id), held.get(turn.commit.instance_id)
            if row is None or lease is None or not _may_commit(turn, row, lease):
                continue
            if any(owners.get(mid) != turn.commit.instance_id for mid in consumed[index]):
                continue  # someone applied them already
            if any(task_tokens.get(h.task_row_id) != h.lease_token for h in turn.commit.handed_over):
                continue  # a handed-over outcome's task was taken over: the other run's stands
            if not visible.get(turn.commit.instance_id, set()) <= set(consumed[index]):
                continue  # messages came before the handed-over outcomes: they go first
            c = turn.commit
            if c.discarded or c.children or c.continue_as_new:
                write_turn(tx, turn, row, lease["lease_seconds"])
                group.handed.extend(h.task_row_id for h in c.handed_over)
            else:
                group.add(tx, turn, row)
            outcomes[index] = Outcome.OK
        group.send(tx)
        pending = later
    return outcomes


def _read_checks(
    cursor: Answer,
) -> tuple[dict[str, Row], dict[int, str], dict[int, str], dict[str, set[int]]]:
    """The answer of ``commit_checks``: the leases by instance, the consumed messages still
    queued (their instances), the handed-over tasks' lease tokens, and the due messages of
    the instances whose turns apply handed-over outcomes."""
    leases: dict[str, Row] = {}
    owners: dict[int, str] = {}
    task_tokens: dict[int, str] = {}
    visible: dict[str, set[int]] = {}
    for r in cursor.fetchall():
        fact = r["fact"]
        if fact == "lease":
            leases[r["instance_id"]] = r
        elif fact == "owner":
            owners[r["id"]] = r["instance_id"]
        elif fact == "task":
            task_tokens[r["id"]] = r["token"]
        else:
            visible.setdefault(r["instance_id"], set()).add(r["id"])
    return leases, owners, task_tokens, visible


def _consumed(turn: PreparedTurn) -> list[int]:
    """The message rows ``turn`` consumed (applied or discarded)."""
    c = turn.commit
    return stored_messages(sorted({*c.consumed, *(mid for mid, _, _ in c.discarded)}))


def commits_optimistically(tx: Tx, turns: Sequence[PreparedTurn]) -> bool:
    """Whether :func:`commit_turns` commits ``turns`` in ``tx`` optimistically (reading
    nothing): the transaction is optimistic and the turns all plain (a :class:`GroupWrite`
    writes them), of distinct instances, none ending an instance that may report to a
    parent (the report is made from the row)."""
    if not tx.optimistic or len({t.commit.instance_id for t in turns}) != len(turns):
        return False
    return not any(
        (t.status.is_terminal and t.commit.may_report)
        or t.commit.discarded
        or t.commit.children
        or t.commit.continue_as_new
        for t in turns
    )


def _may_commit(turn: PreparedTurn, row: Row, lease: Row) -> bool:
    """Whether ``turn`` may commit on the instance ``row`` (locked) under ``lease``."""
    c = turn.commit
    return (
        lease["token"] == c.lease_token
        and row["status"] not in TERMINAL
        and row["execution_id"] == c.execution_id
        and (c.run_id is None or row["run_id"] == c.run_id)
    )


class GroupWrite:
    """The writes of the plain turns of a group commit (no children, no continue-as-new, no
    discards), and the deletion of the tasks whose outcomes the turns applied (handed over):
    one statement (``write_plain_turns``) whatever their number; then the queued tasks of
    the instances the turns ended are discarded.
    Those turns' instances, leases and messages are this transaction's alone (their rows are
    locked), and no part of the statement touches another's rows, so writing them together
    keeps every turn's own order. ``check``: the statement checks the turns itself (an
    optimistic commit; see ``write_plain_turns``). ``started``: the group is the first turn
    of a run the transaction inserted as that turn leaves it (see :func:`group_write`)."""

    def __init__(self, *, check: bool, started: bool = False) -> None:
        self.check = check
        self.started = started
        self.turns: list[dict[str, Any]] = []
        self.events: list[tuple[str, int, list[str]]] = []  # (instance, execution, its events)
        self.tasks: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.handed: list[int] = []
        self.released: list[str] = []  # released instances that may have messages due queued
        self.ended: list[tuple[str, str]] = []  # (instance, its terminal status)

    def add(self, tx: Tx, turn: PreparedTurn, row: Row | None) -> None:
        """Queue a plain turn's writes (those :func:`write_turn` makes for it). ``row``: the
        instance's row, which a turn that ends a sub-orchestration reports to the parent it
        names (None: the turn does not end its instance, or it is written with its checks
        and ends an instance that names no parent, which the statement checks)."""
        c, now = turn.commit, tx.now
        handed = [h.task_row_id for h in c.handed_over]
        self.turns.append(
            {
                "instance_id": c.instance_id,
                "run_id": c.run_id,
                "token": c.lease_token,
                "execution_id": c.execution_id,
                "consumed": _consumed(turn),
                "handed": handed,
                "handed_tokens": [h.lease_token for h in c.handed_over],
                "status": turn.status.value,
                "version": c.version,
                "output": turn.output,
                "failure": turn.failure,
                "custom_status": turn.custom_status,
                "waiting_on": turn.waiting_on,
                "new_events": len(turn.events),
                "new_bytes": turn.events_bytes,
                "full_replay": int(c.stats.full_replay),
                "replayed_events": c.stats.replayed_events,
                "duration": c.stats.duration,
                "progressed": bool(c.stats.progressed),
                "release": c.release,
                "extend": c.extend_lease,
            }
        )
        self.handed.extend(handed)
        if turn.events:
            self.events.append((c.instance_id, c.execution_id, turn.events))
        for task, text in zip(c.activities, turn.activity_inputs, strict=True):
            params = new_task_params(task, text, now)
            lease = scheduled_lease(tx.scheduled, task, ending=turn.status.is_terminal)
            if lease is None:
                tx.notify(ACTIVITIES)
            else:
                params.update(lease)
            self.tasks.append(params)
        for m, (kind, text) in zip(c.messages, turn.messages, strict=True):
            self.add_message(
                m.instance_id, m.run_id, m.execution_id, kind, text, now if m.visible_at is None else m.visible_at
            )
        if turn.status.is_terminal:
            assert row is not None or (self.check and not c.may_report), "the turn's parent is not known"
            report = parent_report(c, row, now) if row is not None else None
            if report is not None:
                self.add_message(report.instance_id, report.run_id, report.execution_id, *event_row(report.event), now)
            tx.instance_ended(c.instance_id)
            self.ended.append((c.instance_id, c.status.value))
        if self.messages:
            tx.notify(ORCHESTRATIONS)
        if c.release and _may_leave_messages_due(c):
            self.released.append(c.instance_id)

    def add_message(
        self, instance_id: str, run_id: str | None, execution_id: int | None, kind: str, text: str, visible_at: float
    ) -> None:
        """Queue one message."""
        self.messages.append(
            {
                "instance_id": instance_id,
                "run_id": run_id,
                "execution_id": execution_id,
                "kind": kind,
                "event": text,
                "visible_at": visible_at,
            }
        )

    def send(self, tx: Tx) -> None:
        """Send the statement; signal if a released instance has messages queued."""
        if not (self.turns or self.handed):
            return
        consumed = [m for t in self.turns for m in t["consumed"]]
        parts = {
            "consumed": bool(consumed),
            "messages": bool(self.messages),
            "released": any(t["release"] for t in self.turns),
            "extended": any(t["extend"] and not t["release"] for t in self.turns),
            "handed": bool(self.handed),
            "ended": bool(self.ended),
            "tasks": bool(self.tasks),
        }
        one_turn = self.started or (len(self.turns) == 1 and ONE_TURN_STATEMENT)
        params = {**self.turns[0]} if one_turn else {}  # the turn's fields, as parameters
        params.update(
            now=tx.now,
            tasks=json.dumps(self.tasks),
            messages=json.dumps(self.messages),
            handed=bigint_array(self.handed),
            consumed=bigint_array(consumed),
        )
        if one_turn:
            params["turn_handed"] = bigint_array(self.turns[0]["handed"])
            params["handed_tokens"] = text_array(params["handed_tokens"])
            params["event_texts"] = text_array([text for _, _, texts in self.events for text in texts])
        else:
            params["turns"] = json.dumps(self.turns)
            params["ids"] = text_array([t["instance_id"] for t in self.turns])
            # The stored JSON goes in as it is (json keeps it byte for byte).
            params["events"] = (
                "["
                + ",".join(
                    f'{{"instance_id":{json.dumps(iid)},"execution_id":{execution},"n":{n},"event":{event}}}'
                    for iid, execution, texts in self.events
                    for n, event in enumerate(texts)
                )
                + "]"
            )
        answer = tx.run(
            group_write(
                self.check,
                frozenset(p for p, needed in parts.items() if needed),
                one_turn=one_turn,
                started=self.started,
            ),
            params,
        )
        if tx.scheduled is not None:
            tx.scheduled.add_rows(answer.fetchall)
        if not self.check:  # a checked statement refuses to end an instance with queued tasks
            for instance_id, status in self.ended:
                discard_queued_tasks(tx, instance_id, f"instance became {status}")
        if self.released:
            _signal_if_queued(tx, self.released)


def _may_leave_messages_due(commit: TurnCommit) -> bool:
    """Whether messages due now may be queued for ``commit``'s instance once the turn has
    committed. Not for a turn that applied outcomes handed over: its checks found no message
    due but those it consumed (else it is refused), and since then the instance's row, locked
    by this transaction, has kept anyone from queueing more."""
    return not commit.handed_over


def _signal_if_queued(tx: Tx, released: list[str]) -> None:
    """Signal the orchestration queue if messages due now came for instances while this
    transaction held their leases, which it now released: a worker must look at them. The
    statement sends the NOTIFY itself; this process is signalled once the transaction has
    committed (the COMMIT does not wait for the answer)."""

    def signal(answer: Answer) -> None:
        row = answer.fetchone()
        if row is not None and row["due"]:
            tx.notify(ORCHESTRATIONS)

    [channel] = channels({ORCHESTRATIONS}) if tx.sender is not None else [None]
    params = {"ids": text_array(released), "now": tx.now, "channel": channel, "sender": tx.sender}
    tx.read_after_commit(Q.due_messages_among, params, signal)


def write_turn(tx: Tx, turn: PreparedTurn, row: Row, lease_seconds: float) -> None:
    """Write one checked turn, statement by statement (a plain turn goes to a
    :class:`GroupWrite` instead)."""
    c = turn.commit
    now, iid = tx.now, c.instance_id

    # Consumed messages: discard records first (they copy the row), then delete.
    if c.discarded:
        tx.run(
            Q.discard_consumed,
            {
                "instance_id": iid,
                "ids": [mid for mid, _, _ in c.discarded],
                "reasons": [reason for _, reason, _ in c.discarded],
                "details": [detail for _, _, detail in c.discarded],
                "now": now,
            },
        )
    consumed = _consumed(turn)
    if consumed:
        tx.run(Q.delete_consumed, {"instance_id": iid, "ids": consumed})

    if turn.events:
        tx.run(
            Q.insert_history,
            {
                "instance_id": iid,
                "execution_id": c.execution_id,
                "first": row["history_event_count"],
                "events": list(turn.events),
            },
        )
    tx.run(Q.update_instance_after_turn, instance_after_turn(turn, row, now))
    if turn.status.is_terminal:
        tx.instance_ended(iid)

    if c.activities:
        tx.run(
            Q.insert_activity_tasks,
            {
                "now": now,
                "instance_ids": [a.instance_id for a in c.activities],
                "run_ids": [a.run_id for a in c.activities],
                "execution_ids": [a.execution_id for a in c.activities],
                "task_ids": [a.task_id for a in c.activities],
                "names": [a.name for a in c.activities],
                "inputs": list(turn.activity_inputs),
                "attempts": [a.attempt for a in c.activities],
                "visible_ats": [now if a.visible_at is None else a.visible_at for a in c.activities],
            },
        )
        tx.notify(ACTIVITIES)
    outbox = Outbox()
    for m, (kind, text) in zip(c.messages, turn.messages, strict=True):
        outbox.add(m.instance_id, m.run_id, m.execution_id, kind, text, now, m.visible_at)
    report = parent_report(c, row, now)
    if report is not None:
        outbox.add(report.instance_id, report.run_id, report.execution_id, *event_row(report.event), now, None)
    for child in c.children:
        _start_child(tx, child, outbox)
    if c.continue_as_new:
        _continue_as_new(tx, turn, row, outbox)
    outbox.flush(tx)

    if c.status.is_terminal:
        discard_queued_tasks(tx, iid, f"instance became {c.status.value}")
    if c.release:
        tx.run(Q.release_lease, {"instance_id": iid, "token": c.lease_token})
        if _may_leave_messages_due(c):
            _signal_if_queued(tx, [iid])
    elif c.extend_lease:
        tx.run(
            Q.extend_lease,
            {"instance_id": iid, "token": c.lease_token, "expires_at": now + lease_seconds},
        )


def insert_instance(tx: Tx, params: dict[str, Any]) -> bool:
    """Insert a new run's instance row (``new_instance_params``) unless the id is taken; the
    caller holds the id lock (``lock_instance_id``). Returns True if inserted."""
    return tx.one(Q.insert_instance, params) is not None


def retire_run(tx: Tx, row: Row) -> int:
    """Make way for a new run of a terminal instance's id (the caller holds its row lock):
    its row and lease go, the messages still queued for it are discarded with a record
    (``stale_run``: none may reach the new run, invariant 9), its history stays readable
    (within the retention). Returns the new run's first execution (executions are numbered
    across the runs of an id)."""
    iid = row["instance_id"]
    queued = tx.all(Q.messages_of_instance, {"instance_id": iid})
    detail = f"queued for run {row['run_id'][:8]}, which had ended, when the id was given a new run"
    discard(tx, iid, [(m, DiscardReason.STALE_RUN, detail) for m in queued])
    tx.run(Q.delete_leases, {"ids": [iid]})
    tx.run(Q.delete_instances, {"ids": [iid]})
    tx.notify(INSTANCES)  # the ended run is gone, as if purged: a row it handed over is out of date
    forget_executions(tx, iid, row["execution_id"] + 1)
    return int(row["execution_id"]) + 1


def forget_executions(tx: Tx, instance_id: str, current: int) -> None:
    """Retention: delete the history and discard records of the executions of an instance
    that are more than the store's ``keep_executions`` before ``current``, its new current
    execution."""
    keep = tx.options.keep_executions
    if keep is not None and current - 1 - keep >= 1:
        params = {"instance_id": instance_id, "up_to": current - 1 - keep}
        tx.run(Q.forget_history, params)
        tx.run(Q.forget_discards, params)


def _start_child(tx: Tx, child: ChildStart, outbox: Outbox) -> None:
    """Create a sub-orchestration, or tell the parent at once why it cannot (invariant 4,
    :func:`perdure.store.common.routing.child_start_rule`)."""
    now, parent = tx.now, child.parent
    tx.run(Q.lock_instance_id, {"instance_id": child.instance_id})
    existing = tx.one(Q.lock_instance, {"instance_id": child.instance_id})
    rule = child_start_rule(existing, child)
    if rule is ChildStartRule.EXISTS:
        return  # the same start, redelivered: the child exists already
    if rule is ChildStartRule.REFUSE:
        assert existing is not None
        event = SubOrchestrationFailed(timestamp=now, task_id=parent.task_id, failure=child_refusal(existing, child))
        outbox.add(parent.instance_id, parent.run_id, parent.execution_id, *event_row(event), now, None)
        return
    execution = retire_run(tx, existing) if existing is not None else 1
    run_id = child.run_id or new_run_id()
    text = payload(child.input)
    params = new_instance_params(child.instance_id, child.name, text, parent, now, run_id, execution, child.version)
    if not insert_instance(tx, params):  # pragma: no cover - the id lock keeps others out
        raise RuntimeError(f"instance {child.instance_id!r} was created concurrently despite its id lock")
    start = child.start_event(run_id, execution, now)
    outbox.add(child.instance_id, run_id, execution, *event_row(start), now, None)


def _continue_as_new(tx: Tx, turn: PreparedTurn, row: Row, outbox: Outbox) -> None:
    """The message that opens the next execution: its ``ExecutionStarted``, of the same run,
    with the messages it takes first. The history of executions beyond the retention is
    deleted, with their discard records."""
    c, now = turn.commit, tx.now
    new_execution = c.execution_id + 1
    forget_executions(tx, c.instance_id, new_execution)
    start = continue_as_new_start(c, row, now)
    outbox.add(c.instance_id, row["run_id"], new_execution, *event_row(start), now, None)


def discard_queued_tasks(tx: Tx, instance_id: str, detail: str) -> None:
    """A terminal instance's queued activity tasks will never be needed: remove those no
    live worker holds, each with a discard record (a held one is discarded on completion)."""

    def record(deleted: Answer) -> None:
        rows = sorted(deleted.fetchall(), key=lambda r: r["task_row_id"])
        insert_discards(
            tx,
            [(r["instance_id"], r["run_id"], r["execution_id"], dumps_event(task_event(r)), detail) for r in rows],  # type: ignore[arg-type]
            DiscardReason.TERMINAL_INSTANCE,
        )

    tx.read_later(Q.discard_unlocked_tasks, {"instance_id": instance_id, "now": tx.now}, record)


def insert_discards(
    tx: Tx, records: Sequence[tuple[str, str | None, int | None, str, str | None]], reason: str | Sequence[str]
) -> None:
    """Write discard records ``(instance_id, run_id, execution_id, event JSON, detail)`` with
    one ``reason`` for all, or one per record."""
    if not records:
        return
    reasons = [reason] * len(records) if isinstance(reason, str) else list(reason)
    tx.run(
        Q.insert_discards,
        {
            "now": tx.now,
            "instance_ids": [r[0] for r in records],
            "run_ids": [r[1] for r in records],
            "execution_ids": [r[2] for r in records],
            "events": [r[3] for r in records],
            "reasons": reasons,
            "details": [r[4] for r in records],
        },
    )


def send_request(tx: Tx, request_id: str | None, operation: str, instance_id: str) -> Callable[[], bool]:
    """:func:`first_request`, sent now and answered by the function returned."""
    if request_id is None:
        return lambda: True
    params = {"request_id": request_id, "operation": operation, "instance_id": instance_id, "now": tx.now}
    cursor = tx.run(Q.insert_request, params)
    return lambda: cursor.fetchone() is not None


def first_request(tx: Tx, request_id: str | None, operation: str, instance_id: str) -> bool:
    """Record a client operation's request id; False if it was recorded before (the
    operation was applied already and must not be applied again). No id: always True."""
    return send_request(tx, request_id, operation, instance_id)()


# --- leases ------------------------------------------------------------------------------


def abandon(tx: Tx, instance_id: str, token: str, retry_after: float) -> None:
    """See :meth:`perdure.store.base.Store.abandon_orchestration`. With ``retry_after`` the
    lease is kept under a token nobody holds until then (delaying the queued messages
    instead would let a message enqueued later overtake them)."""
    key = {"instance_id": instance_id, "token": token}
    if retry_after > 0:
        new = {"new_token": random_hex(16), "expires_at": tx.now + retry_after}
        released = tx.count(Q.hold_lease, {**key, **new})
    else:
        released = tx.count(Q.release_lease, key)
    if not released:
        raise LeaseLost(f"the lease on instance {instance_id!r} is no longer held by this token")
    if retry_after <= 0:
        tx.notify(ORCHESTRATIONS)


def renew(tx: Tx, instance_id: str, token: str, lease_seconds: float) -> float:
    """See :meth:`perdure.store.base.Store.renew_orchestration_lease`."""
    expires_at = tx.now + lease_seconds
    renewed = tx.count(
        Q.renew_lease,
        {
            "instance_id": instance_id,
            "token": token,
            "expires_at": expires_at,
            "lease_seconds": lease_seconds,
        },
    )
    if not renewed:
        raise LeaseLost(f"the lease on instance {instance_id!r} is no longer held by this token")
    return expires_at
