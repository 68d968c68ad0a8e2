"""Findings about awaited sub-orchestrations: a child that is itself stuck
(``child_stuck``, with the chain down to the stuck descendant and its own diagnosis), or
one that finished without its completion reaching the parent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perdure.core.turn import AwaitedChild
from perdure.diagnosis.model import Code, Diagnosis, Finding
from perdure.diagnosis.text import seconds
from perdure.errors import InstanceNotFoundError

if TYPE_CHECKING:
    from perdure.diagnosis.live import LiveRules


def examine_child(rules: LiveRules, awaited: AwaitedChild) -> None:
    """The findings of one awaited child: ``child_stuck`` with the chain down to the stuck
    descendant, or a healthy item."""
    if rules.ev.queued_completion(awaited.task_id) is not None:
        return  # its completion is queued: the due-message rule covers it
    cid = awaited.instance_id
    try:
        child = rules.diagnose_child(cid)
    except InstanceNotFoundError:
        _child_stuck(rules, awaited, None, f"child instance {cid!r} does not exist")
        return
    if child is None:
        rules.healthy.append(
            {"kind": "child", "instance_id": cid, "name": awaited.name, "state": "not examined (depth limit)"}
        )
        return
    if child.status in ("COMPLETED", "FAILED", "TERMINATED"):
        if _completion_lost(rules, awaited):
            _child_stuck(
                rules,
                awaited,
                child,
                f"child {cid!r} ended {child.status} but its completion never reached this "
                f"instance (store inconsistency)",
            )
        else:
            rules.healthy.append(
                {
                    "kind": "child",
                    "instance_id": cid,
                    "name": awaited.name,
                    "verdict": str(child.verdict),
                    "summary": "finished",
                }
            )
        return
    if not child.stuck:
        rules.healthy.append(
            {
                "kind": "child",
                "instance_id": cid,
                "name": awaited.name,
                "verdict": str(child.verdict),
                "summary": child.top.summary,
            }
        )
        return
    _child_stuck(rules, awaited, child, None)


def _completion_lost(rules: LiveRules, awaited: AwaitedChild) -> bool:
    """Whether a finished child's completion is neither queued for this instance nor
    applied, read afresh: the child may have finished after this instance was read (its
    completion is enqueued in the child's final transaction; messages are read before
    the row, so one consumed in between shows in the row)."""
    iid = rules.ev.record.instance_id
    store = rules.env.store
    for m in store.pending_messages(iid):
        if getattr(m.event, "task_id", None) == awaited.task_id:
            return False
    record = store.get_instance(iid)
    if record is None or record.status.is_terminal:
        return False
    return record.execution_id == rules.ev.record.execution_id and any(
        c.task_id == awaited.task_id for c in record.waiting_on.children
    )


def _child_stuck(rules: LiveRules, awaited: AwaitedChild, child: Diagnosis | None, problem: str | None) -> None:
    cid = awaited.instance_id
    link = {
        "instance_id": cid,
        "name": awaited.name,
        "status": child.status if child else None,
        "verdict": str(child.verdict) if child else None,
        "summary": child.top.summary if child else problem,
    }
    chain = [link]
    root: dict[str, Any] = {"instance_id": cid, "code": None, "summary": problem}
    if child is not None and problem is None:
        top = child.top
        root = {"instance_id": cid, **top.to_dict()}
        if top.code == Code.CHILD_STUCK:
            chain += list(top.evidence.get("chain", ()))
            root = dict(top.evidence.get("root_cause", root))
    leaf = chain[-1]["instance_id"]
    summary = problem or (
        f"waiting on child {cid!r} ({awaited.name}), stuck {len(chain)} level"
        f"{'s' if len(chain) > 1 else ''} down at {leaf!r}: {root.get('code')}: "
        f"{root.get('summary')}"
    )
    mitigation = (
        f"Fix the child first (`perdure diagnose {leaf}`): {root.get('mitigation')}"
        if root.get("mitigation")
        else f"Inspect the child with `perdure diagnose {cid}`; terminating this instance also "
        f"terminates its unfinished children."
    )
    rules.findings.append(
        Finding(
            Code.CHILD_STUCK,
            summary,
            {
                "child": cid,
                "child_name": awaited.name,
                "task_id": awaited.task_id,
                "waiting_s": seconds(rules.now - awaited.scheduled_at),
                "chain": chain,
                "root_cause": root,
                "child_diagnosis": child.to_dict() if child else None,
            },
            mitigation,
        )
    )
