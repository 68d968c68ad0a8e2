"""Starts made in the process of a running worker: eager and handed starts.

A plain ``Client.start`` looks here for a running worker of this process that serves the
orchestration on the same store object, and hands the start to one of its dispatch loops
that waits for work, which creates the instance with its first turn
(:mod:`perdure.runtime.handed`); without one, or while that worker is busy, the instance is
queued for any worker.

``Client.start(..., eager=True)`` looks here for a running worker of this process that
serves the orchestration on the same store object. If there is one, the start and the new
instance's first turn, with the local activities it chains, commit in one transaction
(:meth:`perdure.store.base.Store.create_and_run`): one commit where an ordinary start takes
two (the start, then the worker's turn), and no hand-over to the worker's thread. The same
transaction takes the activity tasks that turn schedules, for the worker to run at once.
If there is none, the start is an ordinary one. Either way the instance runs the same code and
records the same history.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from perdure.store.base import NewInstance, Store

if TYPE_CHECKING:
    from perdure.runtime.handed import HandedStart
    from perdure.runtime.worker import Worker

_lock = threading.Lock()
# Running workers by id(store): a worker holds its store, so the id is not reused while the
# worker is registered.
_workers: dict[int, list[Worker]] = {}


def register(worker: Worker) -> None:
    """Offer ``worker`` for eager and handed starts on its store (from ``Worker.start``)."""
    with _lock:
        _workers.setdefault(id(worker.store), []).append(worker)


def unregister(worker: Worker) -> None:
    """Withdraw ``worker`` (from ``Worker.stop``). Idempotent."""
    with _lock:
        workers = _workers.get(id(worker.store), [])
        if worker in workers:
            workers.remove(worker)
        if not workers:
            _workers.pop(id(worker.store), None)


def served_here(store: Store) -> bool:
    """Whether a worker of this process runs on ``store`` (this store object)."""
    with _lock:
        return bool(_workers.get(id(store)))


def start_eagerly(
    store: Store, instance: NewInstance, *, replace_terminal: bool, request_id: str | None = None
) -> bool:
    """Start ``instance`` on a worker of this process that serves its orchestration on
    ``store``, running its first turn here; False (nothing done) if no worker can."""
    with _lock:
        workers = list(_workers.get(id(store), ()))
    return any(w.start_eagerly(instance, replace_terminal=replace_terminal, request_id=request_id) for w in workers)


def hand_over(
    store: Store, instance: NewInstance, *, replace_terminal: bool, request_id: str | None = None
) -> HandedStart | None:
    """Hand ``instance``'s start to an idle worker of this process that serves its
    orchestration on ``store``; the start as handed over (``result()`` waits for it), or
    None (nothing done) if no worker can take it."""
    with _lock:
        workers = list(_workers.get(id(store), ()))
    for worker in workers:
        handed = worker.hand_start(instance, replace_terminal=replace_terminal, request_id=request_id)
        if handed is not None:
            return handed
    return None
