"""Held leases: instances whose lease a worker keeps while it runs their next activities,
so that each activity's outcome goes straight to the instance's next turn.

A sequential step is an activity and the turn its outcome wakes. When a turn leaves its
instance waiting on activities this worker runs, the worker keeps the instance's lease
(the commit does not release it, and extends it once half of it has gone: the steps in
between write nothing to the lease). When such an activity finishes, its
outcome is handed to the instance's next turn, run at once from the cached executor, and
that turn's commit records the outcome too (:attr:`perdure.store.base.TurnCommit.handed_over`):
one transaction per step, and no claim of the instance in between.

The one delivery rule still decides (invariant 10): the outcome is recorded by that commit,
so it comes after every message queued for the instance before it; the commit stands only
if no such message is queued (else the turn is refused, the outcome is queued behind them,
and the instance is taken again with all of them, in order). Messages that arrive for a
held instance reach it the usual way: the worker's rounds lock the instances it holds when
they have messages. A held lease is used only while it has a good part of its time left;
then it simply runs out (a crashed worker's held leases expire like any other).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from perdure.core.history import loads_event
from perdure.core.records import frozen_record
from perdure.store.base import (
    ActivityCompletion,
    LockedInstance,
    OrchestrationWorkItem,
    QueuedMessage,
    TurnCommit,
)


@frozen_record
class HeldLease:
    """A lease kept after a turn: its token and expiry, and the instance as that turn left
    it (what its next turn needs of the row)."""

    token: str
    expires_at: float
    instance: LockedInstance


class HeldLeases:
    """The instances whose leases a worker holds. Thread-safe: a held instance is handed to
    one turn at a time (it is taken out while that turn runs)."""

    def __init__(self, clock: Callable[[], float], lease_seconds: float) -> None:
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._held: dict[str, HeldLease] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(-2, -1)  # -1 is an eager start's message

    def tokens(self) -> dict[str, str]:
        """Instance id -> token of every lease held now (``RoundRequest.held``)."""
        with self._lock:
            return {iid: held.token for iid, held in self._held.items()}

    def keep(self, commit: TurnCommit, instance: LockedInstance, expired_at: float) -> None:
        """``commit`` landed and kept its lease, which expired at ``expired_at`` before it:
        hold it, with the instance as it left it (and the lease as the commit left it)."""
        expires_at = self._clock() + self._lease_seconds if commit.extend_lease else expired_at
        with self._lock:
            self._held[commit.instance_id] = HeldLease(commit.lease_token, expires_at, instance)

    def drop(self, instance_id: str) -> None:
        """The lease was released, lost or replaced: forget it."""
        with self._lock:
            self._held.pop(instance_id, None)

    def hand_over(
        self, claimed: Sequence[OrchestrationWorkItem], completions: Sequence[ActivityCompletion]
    ) -> tuple[list[OrchestrationWorkItem], dict[str, HeldLease]]:
        """The work items of the next turns: the ``claimed`` ones, and one per held instance
        with outcomes among ``completions``, which are handed to those turns (after the
        messages a claimed item carries); and the held leases taken out for them (for
        :meth:`restore` if their turns are not written). An outcome of a lease with less
        than a third of its time left, or of another run or execution, is not handed over:
        it is queued."""
        now, margin = self._clock(), self._lease_seconds / 3
        handed: dict[str, list[ActivityCompletion]] = {}
        with self._lock:
            for c in completions:
                held = self._held.get(c.instance_id or "")
                if (
                    held is not None
                    and c.event_json is not None
                    and held.expires_at - now > margin
                    and (held.instance.run_id, held.instance.execution_id) == (c.run_id, c.execution_id)
                ):
                    handed.setdefault(held.instance.instance_id, []).append(c)
            taken = {iid: self._held.pop(iid) for iid in handed}  # one turn at a time
        items = []
        for item in claimed:
            outcomes = handed.pop(item.instance.instance_id, [])
            items.append(self._with(item, outcomes, now) if outcomes else item)
        for iid, outcomes in handed.items():
            held = taken[iid]
            item = OrchestrationWorkItem(
                held.instance, held.token, held.expires_at, (), (), held.instance.history_event_count
            )
            items.append(self._with(item, outcomes, now))
        return items, taken

    def restore(self, taken: dict[str, HeldLease]) -> None:
        """The turns of :meth:`hand_over` were not written: the leases are still held."""
        with self._lock:
            for iid, held in taken.items():
                self._held.setdefault(iid, held)

    def _with(
        self, item: OrchestrationWorkItem, outcomes: list[ActivityCompletion], now: float
    ) -> OrchestrationWorkItem:
        """``item`` with ``outcomes`` handed over after its messages. Each event is decoded
        from its stored JSON, as a queued one would be: the turn sees exactly the value its
        replay will."""
        messages = [
            QueuedMessage(
                message_id=next(self._ids),
                instance_id=item.instance.instance_id,
                execution_id=c.execution_id,
                event=loads_event(c.event_json),  # type: ignore[arg-type]
                enqueued_at=now,
                visible_at=now,
                delivery_count=1,
                event_json=c.event_json,
                run_id=c.run_id,
            )
            for c in outcomes
        ]
        return replace(item, messages=(*item.messages, *messages), handed_over=(*item.handed_over, *outcomes))

    def take_all(self) -> dict[str, str]:
        """Forget every held lease and return them (instance id -> token), to release."""
        with self._lock:
            held, self._held = self._held, {}
        return {iid: lease.token for iid, lease in held.items()}
