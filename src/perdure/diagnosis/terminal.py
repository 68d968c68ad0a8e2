"""Findings for a finished instance: completed, terminated, failed, and what failed it
(nondeterminism, an activity without retry policy, retries exhausted, a failed child)."""

from __future__ import annotations

import re
from typing import Any

from perdure.core.executor import describe_event
from perdure.core.failure import Failure
from perdure.core.history import ActivityScheduled, SubOrchestrationCreated
from perdure.core.status import OrchestrationStatus
from perdure.diagnosis.evidence import HistoryIndex, InstanceEvidence
from perdure.diagnosis.model import Code, Finding
from perdure.diagnosis.text import duration, iso, seconds, short

_POSITION = re.compile(r"history index (\d+)")
_RECORDED = re.compile(
    r"the history recorded (?P<held>.+?), but the code now produced (?P<did>.+?)\. The orchestration"
)
_UNRECORDED = re.compile(r"the code now produced (?P<did>.+?), which the history does not record \((?P<held>[^)]*)\)")
_INCONSISTENT = re.compile(r"the history holds (?P<held>.+?), which should have been discarded")


def terminal_findings(ev: InstanceEvidence, index: HistoryIndex) -> list[Finding]:
    """The findings of a COMPLETED, FAILED or TERMINATED instance."""
    record = ev.record
    if record.status is OrchestrationStatus.COMPLETED:
        return [
            Finding(
                Code.COMPLETED,
                f"completed at {iso(record.last_updated_at)} after "
                f"{duration(record.last_updated_at - record.created_at)}",
                {
                    "completed_at": iso(record.last_updated_at),
                    "duration_s": seconds(record.last_updated_at - record.created_at),
                    "execution_id": record.execution_id,
                    "turns": record.stats.turns,
                    "output": short(record.output, 200),
                },
                "Nothing to do: the instance finished.",
            )
        ]
    if record.status is OrchestrationStatus.TERMINATED:
        reason = index.terminated.reason if index.terminated else None
        return [
            Finding(
                Code.TERMINATED,
                f"terminated at {iso(record.last_updated_at)}" + (f": {reason}" if reason else " (no reason given)"),
                {
                    "terminated_at": iso(record.last_updated_at),
                    "reason": reason,
                    "execution_id": record.execution_id,
                },
                "Terminated by an operator (or by its parent); start a new instance if the work must still be done.",
            )
        ]
    return _failed(ev, index)


def _failed(ev: InstanceEvidence, index: HistoryIndex) -> list[Finding]:
    record = ev.record
    failure = record.failure or (index.failed.failure if index.failed else None)
    failure = failure or Failure("UnknownError", "the instance failed without a recorded failure")
    evidence: dict[str, Any] = {
        "error_type": failure.type,
        "error_message": failure.message,
        "failed_at": iso(record.last_updated_at),
        "execution_id": record.execution_id,
    }
    findings: list[Finding] = []
    mitigation = (
        f"Fix the cause shown in the error (`perdure status {record.instance_id}` shows its traceback), "
        "then start a new instance; wrap calls that may fail in try/except for compensation."
    )
    if failure.type.endswith("NonDeterminismError"):
        findings.append(_nondeterminism(ev, failure))
        mitigation = findings[0].mitigation
    elif (task := _failing_activity(index, failure)) is not None:
        scheduled, cause = task
        evidence["failing_task"] = {
            "kind": "activity",
            "name": scheduled.name,
            "task_id": scheduled.task_id,
            "attempt": scheduled.attempt,
            "max_attempts": scheduled.max_attempts,
            "error": str(cause),
        }
        if scheduled.max_attempts is None and scheduled.attempt == 1:
            findings.append(_no_retry(scheduled, cause, terminal=True))
            mitigation = findings[0].mitigation
        elif scheduled.max_attempts is not None:
            mitigation = (
                f"Activity {scheduled.name!r} failed on attempt {scheduled.attempt} of "
                f"{scheduled.max_attempts}: fix the dependency or the activity, raise "
                f"max_attempts / backoff if the failure is transient, and start a new instance."
            )
    elif (child := _failing_child(index, failure)) is not None:
        evidence["failing_task"] = {
            "kind": "sub_orchestration",
            "name": child.name,
            "task_id": child.task_id,
            "instance_id": child.instance_id,
        }
        mitigation = (
            f"The child {child.instance_id!r} failed: run `perdure diagnose {child.instance_id}`; "
            "give call_sub_orchestration a retry policy if the failure is transient."
        )
    elif failure.type.endswith("RegistrationError"):
        mitigation = (
            f"No worker had orchestration {record.name!r} registered: register it with "
            "@app.orchestration, start a worker with that app, then start a new instance."
        )
    task_text = ""
    if "failing_task" in evidence:
        t = evidence["failing_task"]
        task_text = f" in {t['kind'].replace('_', '-')} {t['name']!r}"
    findings.append(Finding(Code.FAILED, f"failed{task_text}: {failure}", evidence, mitigation))
    return findings


def _nondeterminism(ev: InstanceEvidence, failure: Failure) -> Finding:
    message = failure.message
    position = None
    if (m := _POSITION.search(message)) is not None:
        position = int(m.group(1))
    held = did = None
    if (m := _RECORDED.search(message)) or (m := _UNRECORDED.search(message)):
        held, did = m.group("held"), m.group("did")
    elif (m := _INCONSISTENT.search(message)) is not None:
        held, did = m.group("held"), "discarded it instead of applying it"
    evidence: dict[str, Any] = {
        "position": position,
        "history_held": held,
        "code_did": did,
        "message": message,
    }
    if position is not None and 0 <= position < len(ev.history):
        evidence["recorded_event"] = describe_event(ev.history[position])
    where = f" at history position {position}" if position is not None else ""
    what = f": history held {held}, the code did {did}" if held and did else ""
    return Finding(
        Code.NONDETERMINISM,
        f"replay diverged{where}{what}",
        evidence,
        "The orchestration code changed under running instances or is not deterministic. "
        "Register the new code under a new name (versioning) or restore the old code path for "
        "instances already running; use ctx.now(), ctx.new_uuid() and ctx.random() instead of "
        "the clock, uuid4 and random; then start new instances.",
    )


def _no_retry(scheduled: ActivityScheduled, failure: Failure, *, terminal: bool) -> Finding:
    after = "the instance failed" if terminal else "the orchestration caught the error"
    return Finding(
        Code.ACTIVITY_FAILED_NO_RETRY,
        f"activity {scheduled.name!r} failed without a retry policy ({failure}); {after}",
        {
            "activity": scheduled.name,
            "task_id": scheduled.task_id,
            "attempt": scheduled.attempt,
            "max_attempts": scheduled.max_attempts,
            "scheduled_at": iso(scheduled.timestamp),
            "error_type": failure.type,
            "error_message": failure.message,
        },
        f"Call the activity with retry=perdure.RetryPolicy(max_attempts=..., first_delay=...) "
        f"so transient failures of {scheduled.name!r} are retried with durable timers, and "
        f"handle the final ActivityError (compensation) in the orchestration.",
    )


def no_retry_findings(index: HistoryIndex) -> list[Finding]:
    """For a live instance: activity failures without retry policy that the orchestration
    caught (it did not fail, but the work was not retried)."""
    findings = []
    for scheduled, failed in index.activity_failures():
        if scheduled.max_attempts is None and scheduled.attempt == 1:
            findings.append(_no_retry(scheduled, failed.failure, terminal=False))
    return findings[-3:]


def _same(a: Failure, b: Failure) -> bool:
    return (a.type, a.message) == (b.type, b.message)


def _failing_activity(index: HistoryIndex, failure: Failure) -> tuple[ActivityScheduled, Failure] | None:
    """The activity attempt whose failure failed the instance: one recorded in the failure's
    cause chain, else the last activity failure if the instance failed with ActivityError."""
    failures = index.activity_failures()
    chain = failure.chain()
    for scheduled, failed in reversed(failures):
        if any(_same(link, failed.failure) for link in chain):
            return scheduled, failed.failure
    if failures and any(link.type.endswith("ActivityError") for link in chain):
        scheduled, failed = failures[-1]
        return scheduled, failed.failure
    return None


def _failing_child(index: HistoryIndex, failure: Failure) -> SubOrchestrationCreated | None:
    if not any(link.type.endswith("SubOrchestrationError") for link in failure.chain()):
        return None
    failed = sorted(index.child_failures.values(), key=lambda entry: entry[0])
    for _, event in reversed(failed):
        if event.task_id in index.children:
            return index.children[event.task_id][1]
    return None
