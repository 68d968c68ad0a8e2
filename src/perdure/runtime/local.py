"""Local activities: run inside the turn that scheduled them, committed with it.

A turn that schedules local activities (``@app.activity(local=True)``) does not hand them
to the task queue. The worker runs them at once, on the dispatch thread, feeds their
completions to the same executor as the next turn, and repeats while the new turn
schedules more, until the round's ``local_activity_budget`` is spent. The turns so chained
commit as one: one transaction for a whole chain of steps instead of one per step. Once
the budget is spent the round starts no more turns: the instances it has not run stay
locked for the next round
(:meth:`perdure.runtime.orchestrations.OrchestrationDispatcher.run_turns`).

The invariants hold because nothing of the chain is visible before its commit: the chain's
history events, status and outbound messages commit atomically under the instance's lease
(invariants 1 and 2), or not at all, and then the activities run again when the turn is
retried (at-least-once, as for an activity whose completion was lost in a crash). A local
activity that the budget leaves unrun is an ordinary queued task.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from perdure.core.commands import ScheduleActivity
from perdure.core.executor import OrchestrationExecutor
from perdure.core.history import HistoryEvent, TurnStarted
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import Turn

RunLocal = Callable[[str, int, ScheduleActivity], tuple[HistoryEvent, str]]


def chain_local_activities(
    executor: OrchestrationExecutor,
    turn: Turn,
    *,
    is_local: Callable[[str], bool],
    run_local: RunLocal,
    clock: Callable[[], float],
    deadline: float,
) -> tuple[Turn, dict[int, str]]:
    """Run the local activities ``turn`` scheduled, then the turn their completions wake,
    and so on until a turn schedules none or ``deadline`` (``time.perf_counter``) passes.
    Return one turn that covers them all (``turn`` itself if none ran), and the stored JSON
    of the completions it holds by ``id(event)`` (:attr:`TurnCommit.event_json`)."""
    turns = [turn]
    ran: set[int] = set()
    stored: dict[int, str] = {}
    while turn.status is OrchestrationStatus.RUNNING and not executor.is_finished:
        due = [c for c in turn.commands if isinstance(c, ScheduleActivity) and is_local(c.name)]
        completions: list[HistoryEvent] = []
        for task in due:
            if time.perf_counter() >= deadline:
                break
            event, text = run_local(executor.instance_id, turn.execution_id, task)
            completions.append(event)
            stored[id(event)] = text
            ran.add(task.task_id)
        if not completions:
            break
        turn = executor.execute((), [TurnStarted(timestamp=clock()), *completions])
        turns.append(turn)
    return (turn if len(turns) == 1 else merge_turns(turns, ran)), stored


def merge_turns(turns: list[Turn], ran: set[int]) -> Turn:
    """Consecutive turns of one execution as one: every event in order, every command except
    the activities in ``ran`` (already run, their completions among the events), and the
    state after the last turn."""
    last = turns[-1]
    return Turn(
        execution_id=last.execution_id,
        new_events=tuple(event for turn in turns for event in turn.new_events),
        commands=tuple(
            command
            for turn in turns
            for command in turn.commands
            if not (isinstance(command, ScheduleActivity) and command.task_id in ran)
        ),
        status=last.status,
        output=last.output,
        failure=last.failure,
        custom_status=last.custom_status,
        waiting_on=last.waiting_on,
        parent=last.parent,
        replayed_events=turns[0].replayed_events,
    )
