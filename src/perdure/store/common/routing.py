"""Execution routing of queued messages (invariants 3 and 4), the same for every store."""

from __future__ import annotations

from collections.abc import Sequence

from perdure.store.common.rows import Row


def route_messages(messages: Sequence[Row], current: int) -> tuple[list[Row], list[tuple[Row, str]], list[Row]]:
    """Sort an instance's visible messages (in enqueue order) by the execution they target,
    given the ``current`` one: ``(deliver, stale, future)``. Messages for the current
    execution, or for "whichever is current" (``execution_id`` NULL), are delivered;
    messages for an ended execution are stale (discarded with the reason given); messages for
    an execution that does not exist yet are future (deferred, never deleted).

    Delivery order: messages addressed to this execution come before those addressed to
    "whichever is current", each in enqueue order. The events a continue-as-new carries over
    are enqueued for the new execution in its commit, after events raised meanwhile to
    "the current execution", yet they arrived earlier and must be seen first."""
    deliver: list[Row] = []
    stale: list[tuple[Row, str]] = []
    future: list[Row] = []
    for m in messages:
        target = m["execution_id"]
        if target is None or target == current:
            deliver.append(m)
        elif target < current:
            stale.append((m, f"execution {target} has ended; execution {current} is current"))
        else:
            future.append(m)
    deliver.sort(key=lambda m: m["execution_id"] is None)  # stable: enqueue order within each
    return deliver, stale, future
