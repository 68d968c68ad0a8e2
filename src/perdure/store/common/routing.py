"""Execution routing of queued messages and activity completions (invariants 2 to 4), the
same for every store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from perdure.core.history import DiscardReason
from perdure.store.base import ActivityCompletion, Outcome
from perdure.store.common.rows import TERMINAL, Row


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
            stale.append((m, _ended(target, current)))
        else:
            future.append(m)
    deliver.sort(key=lambda m: m["execution_id"] is None)  # stable: enqueue order within each
    return deliver, stale, future


def route_completions(
    completions: Sequence[ActivityCompletion], tasks: Mapping[int, Row]
) -> list[tuple[Outcome, Row | None, str | None, str | None]]:
    """Sort activity completions, given their ``tasks`` rows (by ``task_row_id``, with the
    instance's ``instance_status`` and ``current_execution``): for each, ``(outcome, task
    row, discard reason, detail)``.

    ``LEASE_LOST`` (no row) if the task is gone, its lease token is no longer the
    completion's (another caller took the lease over), or an earlier completion of the
    batch already settled it; ``DISCARDED`` with the reason if the instance has ended or
    the execution that scheduled the task has; else ``OK``, to be enqueued.
    """
    routes: list[tuple[Outcome, Row | None, str | None, str | None]] = []
    settled: set[int] = set()
    for completion in completions:
        row = tasks.get(completion.task_row_id)
        if row is None or completion.task_row_id in settled or row["lease_token"] != completion.lease_token:
            routes.append((Outcome.LEASE_LOST, None, None, None))
            continue
        settled.add(completion.task_row_id)
        status, current = row["instance_status"], row["current_execution"]
        if status is None or status in TERMINAL:
            detail = f"instance is {status}" if status else "instance no longer exists"
            routes.append((Outcome.DISCARDED, row, DiscardReason.TERMINAL_INSTANCE, detail))
        elif current != row["execution_id"]:
            routes.append((Outcome.DISCARDED, row, DiscardReason.STALE_EXECUTION, _ended(row["execution_id"], current)))
        else:
            routes.append((Outcome.OK, row, None, None))
    return routes


def _ended(execution_id: int, current: int) -> str:
    """The detail of a discard for an ended execution."""
    return f"execution {execution_id} has ended; execution {current} is current"
