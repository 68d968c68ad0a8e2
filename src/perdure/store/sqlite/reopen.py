"""Rewind and reset on SQLite (:meth:`perdure.store.base.Store.rewind`, ``reset``): the checks
and the children's fate are :mod:`perdure.store.common.reopen`'s; the run's writes are a
turn's (:func:`perdure.store.sqlite.orchestrations.write_turns`)."""

from __future__ import annotations

import json
import sqlite3

from perdure.core.history import DiscardReason, HistoryEvent
from perdure.store.base import LiveWork, Reset, Rewind
from perdure.store.common import reopen
from perdure.store.common.encode import prepare_turn
from perdure.store.common.rows import new_instance_params, parent_params, payload
from perdure.store.notify import INSTANCES
from perdure.store.sqlite import orchestrations
from perdure.store.sqlite.queries import Q
from perdure.store.sqlite.tx import Tx


def rewind(tx: Tx, rewind: Rewind) -> None:
    """Make one failed execution live again (the caller's transaction)."""
    iid = rewind.instance_id
    row = tx.conn.execute(Q.get_instance, {"instance_id": iid}).fetchone()
    reopen.check_rewindable(row, rewind)
    queued = tx.conn.execute(Q.messages_of_instance, {"instance_id": iid}).fetchall()
    orchestrations.discard(tx, [(m, DiscardReason.TERMINAL_INSTANCE, reopen.REWIND_DETAIL) for m in queued])
    orchestrations.discard_queued_tasks(tx, iid, reopen.REWIND_DETAIL)
    tx.conn.execute(Q.delete_tasks, {"ids": json.dumps([iid])})  # running ones: their outcome is refused
    _write_live(tx, row, [rewind.record], rewind.work)


def reset(tx: Tx, reset: Reset) -> None:
    """Replace a terminal run with the reset's new run (the caller's transaction)."""
    iid = reset.instance_id
    row = tx.conn.execute(Q.get_instance, {"instance_id": iid}).fetchone()
    reopen.check_resettable(row, reset)
    execution = orchestrations.retire_run(tx, row)
    params = new_instance_params(
        iid, reset.name, payload(reset.input), reset.parent, tx.now, reset.run_id, execution, reset.version
    )
    orchestrations.insert_instance(tx, params)
    new_row = tx.conn.execute(Q.get_instance, {"instance_id": iid}).fetchone()
    _write_live(tx, new_row, list(reset.history), reset.work)


def _write_live(tx: Tx, row: sqlite3.Row, events: list[HistoryEvent], work: LiveWork) -> None:
    """Append ``events`` to the instance ``row``'s history and make it live with ``work``."""
    commit = reopen.live_commit(
        row,
        events,
        work,
        read_row=lambda iid: tx.conn.execute(Q.get_instance, {"instance_id": iid}).fetchone(),
        set_parent=lambda iid, parent: tx.conn.execute(Q.set_parent, {"instance_id": iid, **parent_params(parent)}),
        now=tx.now,
    )
    orchestrations.write_turns(tx, [(prepare_turn(commit), row)], [])
    tx.notify(INSTANCES)
