"""Checks of perdure's invariants on a store's state, for fault and schedule tests.

Each check reads the store and returns a list of violations (empty when all is well);
:func:`assert_invariants` raises an ``AssertionError`` listing them.

- :func:`history_violations` (invariants 1, 7): per execution, one ``ExecutionStarted``
  first, at most one completion per task, at most one terminal event, and nothing after it.
- :func:`waiting_violations` (invariants 3, 8): a live instance waits on something, and
  every activity, timer and child it awaits has a source that will complete it (a queued
  or running task, a queued message, a live child).
- :func:`settled_violations` (invariant 3, once the store is quiescent): no message is left
  in the queue, and every task an execution scheduled was completed in its history, or its
  completion or task was discarded with a record or dead-lettered.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ContinuedAsNew,
    DiscardReason,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionTerminated,
    HistoryEvent,
    MessageDiscarded,
    ParentRef,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
    TimerFired,
    TurnStarted,
)
from perdure.core.status import OrchestrationStatus
from perdure.store.base import InstanceQuery, InstanceRecord, Store

COMPLETIONS = (
    ActivityCompleted,
    ActivityFailed,
    TimerFired,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
)
COMPLETION_KINDS = frozenset(c.__name__ for c in COMPLETIONS)
SCHEDULED = (ActivityScheduled, TimerCreated, SubOrchestrationCreated)
ENDINGS = (ExecutionCompleted, ExecutionFailed, ContinuedAsNew, ExecutionTerminated)
KNOWN_REASONS = frozenset(v for k, v in vars(DiscardReason).items() if not k.startswith("_") and isinstance(v, str))


def all_instances(store: Store) -> list[InstanceRecord]:
    """Every instance of the store (all pages)."""
    out: list[InstanceRecord] = []
    cursor = None
    while True:
        page = store.list_instances(InstanceQuery(limit=500, cursor=cursor))
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def histories(store: Store, instance_id: str, last: int) -> dict[int, list[HistoryEvent]]:
    """The histories of executions ``1..last`` of an instance that the store keeps: those
    from the first one with a history on (older ones were forgotten by the store's
    retention, ``keep_executions``; the later ones must all be there)."""
    found = {e: [r.event for r in store.get_history(instance_id, execution_id=e)] for e in range(1, last + 1)}
    first = next((e for e, events in found.items() if events), last)
    return {e: events for e, events in found.items() if e >= first}


def history_violations(store: Store, instance: InstanceRecord) -> list[str]:
    """Invariants 1 and 7 on every execution's history."""
    out = []
    iid = instance.instance_id
    for execution, events in histories(store, iid, instance.execution_id).items():
        where = f"{iid!r} execution {execution}"
        if execution < instance.execution_id and not events:
            out.append(f"{where}: an ended execution has no history")
            continue
        opening = next((e for e in events if not isinstance(e, TurnStarted)), None)
        if opening is not None and not isinstance(opening, ExecutionStarted):
            out.append(f"{where}: history does not open with ExecutionStarted")
        starts = sum(isinstance(e, ExecutionStarted) for e in events)
        if starts > 1:
            out.append(f"{where}: {starts} ExecutionStarted events")
        done = Counter(e.task_id for e in events if isinstance(e, COMPLETIONS))  # type: ignore[attr-defined]
        out += [f"{where}: task {t} completed {n} times" for t, n in done.items() if n > 1]
        scheduled = Counter(e.task_id for e in events if isinstance(e, SCHEDULED))  # type: ignore[attr-defined]
        out += [f"{where}: task {t} scheduled {n} times" for t, n in scheduled.items() if n > 1]
        ends = [i for i, e in enumerate(events) if isinstance(e, ENDINGS)]
        if len(ends) > 1:
            out.append(f"{where}: {len(ends)} ending events")
        if ends and any(not isinstance(e, MessageDiscarded) for e in events[ends[0] + 1 :]):
            out.append(f"{where}: events were applied after the execution ended")
        for e in events:
            if isinstance(e, MessageDiscarded) and e.reason not in KNOWN_REASONS:
                out.append(f"{where}: message discarded with unknown reason {e.reason!r}")
    return out


def waiting_violations(store: Store, instance: InstanceRecord) -> list[str]:
    """Invariants 3 and 8 for one instance: if it is live, what it waits on will come."""
    status = instance.status
    if status.is_terminal:
        return []
    iid, current, run = instance.instance_id, instance.execution_id, instance.run_id
    messages = [m for m in store.pending_messages(iid) if m.execution_id in (None, current) and m.run_id in (None, run)]
    if status is OrchestrationStatus.PENDING or instance.history_event_count == 0:
        if not any(isinstance(m.event, ExecutionStarted) for m in messages):
            return [f"{iid!r} execution {current} has not started and no start is queued"]
        return []
    waiting = instance.waiting_on
    suspended = status is OrchestrationStatus.SUSPENDED  # it also waits for a resume
    if waiting.is_empty() and not messages and not suspended:
        return [f"{iid!r} is {status.value} with nothing to wait on and no message queued"]
    arriving = {getattr(m.event, "task_id", None) for m in messages if isinstance(m.event, COMPLETIONS)}
    tasks = {t.task_id for t in store.activity_tasks(iid) if t.execution_id == current}
    out = []
    for activity in waiting.activities:
        if activity.task_id not in tasks | arriving:
            out.append(
                f"{iid!r} waits on activity {activity.name!r} (task {activity.task_id}) but no "
                f"task is queued or running and no completion is queued"
            )
    for timer in waiting.timers:
        if timer.task_id not in arriving:
            out.append(f"{iid!r} waits on timer task {timer.task_id} but no TimerFired is queued")
    for child in waiting.children:
        if child.task_id in arriving:
            continue
        record = store.get_instance(child.instance_id)
        parent = record.parent if record is not None else None
        mine = parent is not None and parent.is_task(ParentRef(iid, current, child.task_id, run))
        if record is None or record.status.is_terminal or not mine:
            state = "missing" if record is None else f"{record.status.value}, parent {parent}"
            out.append(
                f"{iid!r} waits on child {child.instance_id!r} (task {child.task_id}), which is "
                f"{state}, and no completion is queued"
            )
    return out


def settled_violations(store: Store, instance: InstanceRecord) -> list[str]:
    """Invariant 3 once nothing is in flight: every task each execution scheduled was
    completed in that history, or its completion (or the task) was discarded with a record
    or dead-lettered; and no message is left queued."""
    iid = instance.instance_id
    out = [
        f"{iid!r}: message {type(m.event).__name__} for execution {m.execution_id} still queued"
        for m in store.pending_messages(iid)
    ]
    out += [f"{iid!r}: activity task {t.name!r} (task {t.task_id}) still queued" for t in store.activity_tasks(iid)]
    recorded: dict[int, set[int]] = defaultdict(set)
    for d in store.discarded_messages(instance_id=iid, limit=100_000):
        if d.reason not in KNOWN_REASONS:
            out.append(f"{iid!r}: discard record with unknown reason {d.reason!r}")
        task_id = getattr(d.event, "task_id", None)
        if d.execution_id is not None and task_id is not None:
            recorded[d.execution_id].add(task_id)
    for dead in store.dead_letters(instance_id=iid, limit=100_000):
        task_id = getattr(dead.event, "task_id", None)
        if dead.execution_id is not None and task_id is not None:
            recorded[dead.execution_id].add(task_id)
    for execution, events in histories(store, iid, instance.execution_id).items():
        done = {e.task_id for e in events if isinstance(e, COMPLETIONS)}  # type: ignore[attr-defined]
        done |= {  # recorded in the history as discarded (e.g. it arrived after the end)
            e.message.get("task_id")
            for e in events
            if isinstance(e, MessageDiscarded) and e.message.get("kind") in COMPLETION_KINDS
        }
        for e in events:
            if not isinstance(e, SCHEDULED) or e.task_id in done | recorded[execution]:
                continue
            out.append(
                f"{iid!r} execution {execution}: {type(e).__name__} task {e.task_id} was never "
                f"completed, discarded with a record or dead-lettered"
            )
    return out


def violations(
    store: Store,
    instance_ids: Iterable[str] | None = None,
    *,
    settled: bool = False,
) -> list[str]:
    """All violations for the given instances (default: every instance). With ``settled``
    the store must also be quiescent (see :func:`settled_violations`)."""
    if instance_ids is None:
        records = all_instances(store)
    else:
        records = []
        for iid in instance_ids:
            record = store.get_instance(iid)
            if record is None:
                return [f"instance {iid!r} does not exist"]
            records.append(record)
    out = []
    for record in records:
        out += history_violations(store, record)
        out += waiting_violations(store, record)
        if settled:
            out += settled_violations(store, record)
    return out


def assert_invariants(store: Store, instance_ids: Iterable[str] | None = None, *, settled: bool = False) -> None:
    """Raise ``AssertionError`` listing every violation found by :func:`violations`."""
    found = violations(store, instance_ids, settled=settled)
    if found:
        raise AssertionError("invariants violated:\n  " + "\n  ".join(found))
