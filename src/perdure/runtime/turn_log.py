"""Log lines about committed turns: an instance failed (nondeterminism included), completed,
was terminated or continued as new, and a failed task will be retried.

Logged once a turn's commit has landed (a turn that was dropped logs nothing), on
``perdure.worker`` with the instance's ids as record attributes (:mod:`perdure.logs`).
"""

from __future__ import annotations

import logging

from perdure.core.history import ActivityFailed, SubOrchestrationFailed, TimerCreated, TurnStarted
from perdure.core.status import OrchestrationStatus
from perdure.logs import ids
from perdure.store.base import TurnCommit

log = logging.getLogger("perdure.worker")


def log_turn(commit: TurnCommit) -> None:
    """Log what matters to an operator in ``commit`` (which has been written)."""
    fields = ids(commit.instance_id, commit.execution_id)
    status = commit.status
    if status is OrchestrationStatus.FAILED:
        failure = commit.failure
        what = "nondeterminism: " if failure is not None and failure.type.endswith("NonDeterminismError") else ""
        log.error("instance %r failed: %s%s", commit.instance_id, what, failure, extra=fields)
        return
    if not log.isEnabledFor(logging.INFO):
        return
    if status is OrchestrationStatus.COMPLETED:
        log.info("instance %r completed", commit.instance_id, extra=fields)
    elif status is OrchestrationStatus.TERMINATED:
        reason = commit.output if isinstance(commit.output, str) else "no reason given"
        log.info("instance %r terminated: %s", commit.instance_id, reason, extra=fields)
    elif commit.continue_as_new:
        log.info(
            "instance %r continued as new: execution %d", commit.instance_id, commit.execution_id + 1, extra=fields
        )
    _log_retries(commit)


def _log_retries(commit: TurnCommit) -> None:
    """One line per retry timer this turn created, with the failure that caused it."""
    retries = {t.task_id for t in commit.waiting_on.timers if t.purpose == "retry"}
    if not retries:
        return
    failures = [e.failure for e in commit.new_events if isinstance(e, (ActivityFailed, SubOrchestrationFailed))]
    cause = f" after {failures[0]}" if len(failures) == 1 else ""
    now = next((e.timestamp for e in commit.new_events if isinstance(e, TurnStarted)), None)
    for event in commit.new_events:
        if isinstance(event, TimerCreated) and event.task_id in retries:
            wait = 0.0 if now is None else max(0.0, event.fire_at - now)
            log.info(
                "instance %r will retry a failed task%s: next attempt in %.1f s",
                commit.instance_id,
                cause,
                wait,
                extra=ids(commit.instance_id, commit.execution_id, event.task_id),
            )
