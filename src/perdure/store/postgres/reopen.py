"""Rewind and reset on PostgreSQL (:meth:`perdure.store.base.Store.rewind`, ``reset``): the
checks and the children's fate are :mod:`perdure.store.common.reopen`'s; the run's writes are
a turn's (:func:`perdure.store.postgres.orchestrations.write_turn`). Every instance row it
decides about is locked first (its id lock, then its row), as a start locks it."""

from __future__ import annotations

from perdure.core.history import DiscardReason, HistoryEvent
from perdure.store.base import LiveWork, Reset, Rewind
from perdure.store.common import reopen
from perdure.store.common.encode import prepare_turn
from perdure.store.common.rows import Row, new_instance_params, parent_params, payload
from perdure.store.notify import INSTANCES
from perdure.store.postgres import orchestrations
from perdure.store.postgres.connection import Tx
from perdure.store.postgres.queries import Q


def rewind(tx: Tx, rewind: Rewind) -> None:
    """Make one failed execution live again (the caller's transaction)."""
    iid = rewind.instance_id
    row = _lock(tx, iid)
    reopen.check_rewindable(row, rewind)
    assert row is not None
    queued = tx.all(Q.messages_of_instance, {"instance_id": iid})
    orchestrations.discard(tx, iid, [(m, DiscardReason.TERMINAL_INSTANCE, reopen.REWIND_DETAIL) for m in queued])
    orchestrations.discard_queued_tasks(tx, iid, reopen.REWIND_DETAIL)
    tx.run(Q.delete_tasks, {"ids": [iid]})  # running ones: their outcome is refused
    _write_live(tx, row, [rewind.record], rewind.work)


def reset(tx: Tx, reset: Reset) -> None:
    """Replace a terminal run with the reset's new run (the caller's transaction)."""
    iid = reset.instance_id
    row = _lock(tx, iid)
    reopen.check_resettable(row, reset)
    assert row is not None
    execution = orchestrations.retire_run(tx, row)
    params = new_instance_params(
        iid, reset.name, payload(reset.input), reset.parent, tx.now, reset.run_id, execution, reset.version
    )
    orchestrations.insert_instance(tx, params)
    new_row = tx.one(Q.lock_instance, {"instance_id": iid})
    assert new_row is not None
    _write_live(tx, new_row, list(reset.history), reset.work)


def _lock(tx: Tx, instance_id: str) -> Row | None:
    key = {"instance_id": instance_id}
    tx.run(Q.lock_instance_id, key)
    return tx.one(Q.lock_instance, key)


def _write_live(tx: Tx, row: Row, events: list[HistoryEvent], work: LiveWork) -> None:
    """Append ``events`` to the instance ``row``'s history and make it live with ``work``."""
    commit = reopen.live_commit(
        row,
        events,
        work,
        read_row=lambda iid: _lock(tx, iid),
        set_parent=lambda iid, parent: tx.run(Q.set_parent, {"instance_id": iid, **parent_params(parent)}),
        now=tx.now,
    )
    orchestrations.write_turn(tx, prepare_turn(commit), row, 0.0)
    tx.notify(INSTANCES)
