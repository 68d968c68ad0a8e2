"""The replay executor: runs one execution of an orchestration from its history.

History is one stream of *inputs* (``TurnStarted`` and the delivered messages) interleaved
with *outputs* (the events of the commands the orchestrator created, right after the input
that provoked them). Live, each input is applied and the outputs it provokes are appended.
Replaying feeds the recorded inputs again and checks that the code produces exactly the
recorded outputs at the same positions (invariant 6). Live and replay are therefore the same
computation: a turn gives the same result on a cached executor and after a full replay.

The orchestrator's coroutine is driven with ``send``/``throw`` (no event loop): after each
event is applied, it is resumed for as long as the task it awaits is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, NoReturn

from perdure.core.commands import (
    Command,
    CompleteOrchestration,
    ContinueAsNew,
    CreateTimer,
    FailOrchestration,
    ScheduleActivity,
    StartSubOrchestration,
    TerminateOrchestration,
    TerminateSubOrchestration,
)
from perdure.core.context import ContinueAsNewSignal, OrchestrationContext
from perdure.core.failure import Failure
from perdure.core.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ContinuedAsNew,
    CustomStatusSet,
    DiscardReason,
    EventRaised,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionRewound,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    MessageDiscarded,
    ParentRef,
    PatchMarker,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
    TimerFired,
    TurnStarted,
    encode_event,
)
from perdure.core.ids import child_instance_id
from perdure.core.payload import dumps_payload
from perdure.core.registry import App
from perdure.core.rewind import effective_history
from perdure.core.status import OrchestrationStatus
from perdure.core.tasks import ActivityTask, EventTask, SubOrchestrationTask, Task, TimerTask
from perdure.core.turn import (
    AwaitedActivity,
    AwaitedChild,
    AwaitedEvent,
    AwaitedTimer,
    Turn,
    WaitingOn,
)
from perdure.errors import NonDeterminismError, SerializationError, describe

#: Events the orchestrator produces; replay must reproduce each at its recorded position.
OUTPUT_EVENTS: tuple[type[HistoryEvent], ...] = (
    ActivityScheduled,
    TimerCreated,
    SubOrchestrationCreated,
    ExecutionCompleted,
    ExecutionFailed,
    ContinuedAsNew,
    PatchMarker,
)
# Records rather than commands: skipped on replay (custom status is recomputed by the code,
# and a discarded message changed nothing).
_RECORDS = (CustomStatusSet, MessageDiscarded, ExecutionRewound)
# Completion messages and the kind of task each one completes.
_COMPLETES: dict[type[HistoryEvent], type[Task[Any]]] = {
    ActivityCompleted: ActivityTask,
    ActivityFailed: ActivityTask,
    TimerFired: TimerTask,
    SubOrchestrationCompleted: SubOrchestrationTask,
    SubOrchestrationFailed: SubOrchestrationTask,
}
# Operator messages act at once, even while suspended.
_OPERATOR = (ExecutionTerminated, ExecutionSuspended, ExecutionResumed)

_REMEDY = (
    "The orchestration code changed in a way that does not match running instances, or it is "
    "not deterministic: keep the old code path for running instances behind ctx.patched(...), "
    "or register the new code as a new version (docs/upgrading.md); once the code is fixed or "
    "rolled back, rewind the failed instances."
)


#: ``execute(parent=...)`` not given: the parent is the one the history records.
_AS_RECORDED: Any = object()


class _Diverged(BaseException):
    """Unwinds the orchestrator and the replay once the code stopped matching history."""


class OrchestrationExecutor:
    """Live executor of one instance. Feed it the whole current-execution history once, then
    only new events.

    If :meth:`execute` raises (a corrupt argument, an unregistered orchestration), the
    executor is in an undefined state and must be dropped.
    """

    def __init__(self, app: App, instance_id: str, *, max_payload_bytes: int | None = None) -> None:
        self._app = app
        self._instance_id = instance_id
        self._max_payload_bytes = max_payload_bytes  # the limit of the orchestration's output
        self._ctx = OrchestrationContext(self)
        # execution
        self._name: str | None = None
        self._input: Any = None
        self._parent: ParentRef | None = None
        self._reports_to: ParentRef | None = _AS_RECORDED
        self._run_id: str | None = None
        self._version: int | None = None
        self._trace: dict[str, str] | None = None
        self._started_at: float | None = None
        self._execution_id = 1
        self._seed_execution = 1
        self._coro: Any = None
        self._awaiting: Task[Any] | None = None
        self._now = 0.0
        self._replaying = False
        self._used = False
        # tasks and messages
        self._next_task_id = 0
        self._open: dict[int, ActivityTask[Any] | TimerTask | SubOrchestrationTask[Any]] = {}
        self._arrived: set[int] = set()
        self._buffer: list[EventRaised] = []
        self._waiters: list[EventTask[Any]] = []
        self._suspended = False
        self._deferred: list[HistoryEvent] = []
        self._custom_status: Any = None
        self._custom_status_json = "null"
        self._patches: dict[str, bool] = {}
        # outcome
        self._finished = False
        self._status = OrchestrationStatus.PENDING
        self._output: Any = None
        self._failure: Failure | None = None
        self._continue: tuple[Any, bool, int] | None = None
        self._carried: list[HistoryEvent] = []
        self._continue_pending = False
        self._divergence: NonDeterminismError | None = None
        # the current execute() call
        self._past: Sequence[HistoryEvent] = ()
        self._positions: Sequence[int] = ()  # stored history index of each event of _past
        self._cursor = 0
        self._length = 0
        self._new_events: list[HistoryEvent] = []
        self._commands: list[Command] = []

    # --- public API ----------------------------------------------------------------------

    @property
    def history_length(self) -> int:
        """How many history events this executor holds: the replayed past plus every event
        it returned in ``Turn.new_events``."""
        return self._length

    @property
    def execution_id(self) -> int:
        """The execution this executor runs (from ``ExecutionStarted``)."""
        return self._execution_id

    @property
    def started_at(self) -> float | None:
        """When the execution started (its ``ExecutionStarted`` timestamp; ``None`` before)."""
        return self._started_at

    @property
    def is_finished(self) -> bool:
        """True once the execution ended (completed, failed, terminated or continued as new);
        a finished executor must not be reused."""
        return self._finished

    @property
    def divergence(self) -> NonDeterminismError | None:
        """The nondeterminism replay found, if any (the execution then fails with it); its
        fields name the position and what history and code hold there."""
        return self._divergence

    @property
    def pending_events(self) -> tuple[EventRaised, ...]:
        """External events received but not yet handed to a ``wait_for_event``, oldest first."""
        return tuple(self._buffer)

    def execute(
        self, past: Sequence[HistoryEvent], new: Sequence[HistoryEvent], *, parent: ParentRef | None = _AS_RECORDED
    ) -> Turn:
        """Replay ``past`` (on a fresh executor; pass ``()`` afterwards), then apply the
        turn's ``new`` events: ``TurnStarted`` first, then the delivered messages.

        ``parent``: the parent task the instance reports to now, as the store's row says
        (a reset re-attaches a running child to its parent's new run); by default the one
        its ``ExecutionStarted`` recorded. A cascading terminate applies only from it."""
        if parent is not _AS_RECORDED:
            self._reports_to = parent
        if self._finished:
            raise RuntimeError(f"execution {self._execution_id} of {self._instance_id!r} has ended; use a new executor")
        if self._used and past:
            raise ValueError("this executor already holds its history: pass past=() and only the new events")
        self._used = True
        self._new_events = []
        self._commands = []
        self._replay(past)
        if self._finished and new:
            raise ValueError(
                f"execution {self._execution_id} of {self._instance_id!r} already ended in its "
                f"history; messages to it must be discarded, not executed"
            )
        for event in new:
            self._receive(event)
        if self._divergence is not None and not self._finished:
            self._fail(Failure.from_exception(self._divergence))
        return self._turn(len(past))

    # --- host API, called by OrchestrationContext ------------------------------------------

    @property
    def instance_id(self) -> str:
        """The instance this executor runs."""
        return self._instance_id

    @property
    def is_replaying(self) -> bool:
        """True while recorded history is being replayed."""
        return self._replaying

    @property
    def seed_execution(self) -> int:
        """The execution that seeds ``ctx.new_uuid`` and ``ctx.random``: this one, or for a
        run reset from another, the execution it continues (:class:`RunOrigin`)."""
        return self._seed_execution

    @property
    def now(self) -> float:
        """The current turn's ``TurnStarted`` timestamp (UTC epoch seconds)."""
        return self._now

    def schedule_activity(
        self, name: str, input: Any, attempt: int, max_attempts: int | None = None
    ) -> ActivityTask[Any]:
        """Record a new activity task (attempt ``attempt`` of ``max_attempts`` under a retry
        policy, ``None`` without one) and return it."""
        task: ActivityTask[Any] = ActivityTask(self._issue_task_id(), name, attempt, self._now)
        self._open[task.task_id] = task
        self._emit(
            ActivityScheduled(
                timestamp=self._now,
                task_id=task.task_id,
                name=name,
                input=input,
                attempt=attempt,
                max_attempts=max_attempts,
            ),
            ScheduleActivity(task_id=task.task_id, name=name, input=input, attempt=attempt),
        )
        return task

    def start_sub_orchestration(
        self, name: str, input: Any, instance_id: str | None, version: int | None = None
    ) -> SubOrchestrationTask[Any]:
        """Record the start of a child (generated id unless ``instance_id``) running
        ``version`` (by default the latest this app registers, if it registers the name)
        and return its task."""
        if version is None and name in self._app.orchestrations:
            version = self._app.orchestrations[name].version
        task_id = self._issue_task_id()
        child_id = instance_id or self._recorded_child_id(task_id, name)
        child_id = child_id or child_instance_id(self._instance_id, self._run_id, self._execution_id, task_id)
        task: SubOrchestrationTask[Any] = SubOrchestrationTask(task_id, name, child_id, self._now)
        self._open[task_id] = task
        self._emit(
            SubOrchestrationCreated(timestamp=self._now, task_id=task_id, name=name, instance_id=child_id, input=input),
            StartSubOrchestration(task_id=task_id, name=name, instance_id=child_id, input=input, version=version),
        )
        return task

    def _recorded_child_id(self, task_id: int, name: str) -> str | None:
        """Replaying, the id history recorded for the child of ``task_id`` the code starts
        without an id of its own: generated ids are the engine's to choose, so a history
        copied into another run (a reset) replays with its children's ids."""
        if not self._replaying:
            return None
        index = self._next_output()
        recorded = self._past[index] if index < len(self._past) else None
        if isinstance(recorded, SubOrchestrationCreated) and (recorded.task_id, recorded.name) == (task_id, name):
            return recorded.instance_id
        return None

    def create_timer(self, fire_at: float, purpose: str) -> TimerTask:
        """Record a durable timer due at ``fire_at`` and return it."""
        task = TimerTask(self._issue_task_id(), fire_at, purpose)
        self._open[task.task_id] = task
        self._emit(
            TimerCreated(timestamp=self._now, task_id=task.task_id, fire_at=fire_at),
            CreateTimer(task_id=task.task_id, fire_at=fire_at),
        )
        return task

    def wait_for_event(self, name: str, timeout: timedelta | None) -> EventTask[Any]:
        """A wait for event ``name``: served from the buffer if one is there, else registered
        (with a "timeout" timer when ``timeout`` is given)."""
        for index, event in enumerate(self._buffer):
            if event.name == name:
                del self._buffer[index]
                task: EventTask[Any] = EventTask(name, self._now)
                task._deliver(event.input)
                return task
        timer = None
        if timeout is not None:
            timer = self.create_timer(self._now + timeout.total_seconds(), "timeout")
        task = EventTask(name, self._now, timer=timer, timeout=timeout, on_timeout=self._waiters.remove)
        self._waiters.append(task)
        return task

    def set_custom_status(self, status: Any) -> None:
        """Record a new custom status (nothing if it equals the current one)."""
        text = dumps_payload(status, what="custom status")
        if self._finished or text == self._custom_status_json:
            return
        self._custom_status, self._custom_status_json = status, text
        self._emit(CustomStatusSet(timestamp=self._now, status=status), None)

    def patched(self, patch_id: str, deprecated: bool) -> bool:
        """Whether this execution takes the code path of patch ``patch_id``: live, yes (a
        :class:`PatchMarker` is recorded); on replay, only if the history has the marker at
        this point. The first answer for an id holds for the rest of the execution.
        ``deprecated`` (``ctx.deprecate_patch``): the path is taken either way, and a marker
        is recorded live and consumed on replay when present."""
        known = self._patches.get(patch_id)
        if known is not None:
            return known
        if self._finished:
            return True
        if self._replaying:
            index = self._next_output(patch_id)
            recorded = self._past[index] if index < len(self._past) else None
            taken = isinstance(recorded, PatchMarker) and recorded.patch_id == patch_id
            if taken:
                self._cursor = index + 1
            taken = taken or deprecated
        else:
            taken = True
            self._append(PatchMarker(timestamp=self._now, patch_id=patch_id, deprecated=deprecated))
        self._patches[patch_id] = taken
        return taken

    def continue_as_new(self, input: Any, carry_over_events: bool, version: int | str | None = None) -> None:
        """Note that the orchestrator asked to continue as new (it then unwinds), on
        ``version``: the same as now (``None``), ``"latest"`` (the latest this app
        registers) or a number this app registers."""
        if self._continue is None and not self._finished:
            assert self._name is not None
            if version is None:
                version = self._version or 1
            elif version == "latest":
                version = self._app.orchestration_named(self._name).version
            else:
                version = self._app.orchestration_named(self._name, int(version)).version
            self._continue = (input, carry_over_events, version)

    # --- replay and message intake ---------------------------------------------------------

    def _replay(self, past: Sequence[HistoryEvent]) -> None:
        self._replaying = True
        self._cursor = 0
        if any(isinstance(e, ExecutionRewound) for e in past):
            kept = effective_history(past)  # the turns a rewind undid do not count
            self._past, self._positions = [e for _, e in kept], [i for i, _ in kept]
        else:
            self._past, self._positions = past, range(len(past))
        stored = len(past)
        past = self._past
        try:
            while self._cursor < len(past):
                index = self._cursor
                event = past[index]
                self._cursor += 1
                if isinstance(event, PatchMarker) and event.deprecated:
                    continue  # a deprecate_patch call may be removed: its marker asks nothing
                if isinstance(event, OUTPUT_EVENTS):
                    state = self._code_state()
                    self._diverge(
                        f"at history index {self._at(index)}{_task_of(event)} the history recorded "
                        f"{describe_event(event)}, but the code now did not produce it ({state})",
                        position=self._at(index),
                        recorded=describe_event(event),
                        produced=f"nothing ({state})",
                    )
                if not isinstance(event, _RECORDS):
                    self._receive(event)
        except _Diverged:
            pass
        finally:
            self._replaying = False
            self._length += stored
            self._past, self._positions = (), ()

    def _receive(self, event: HistoryEvent) -> None:
        """Take one input: record it (or its discard) and act on it unless suspended."""
        if isinstance(event, TurnStarted):
            self._now = event.timestamp
            self._append(event)
            return
        if isinstance(event, (*OUTPUT_EVENTS, *_RECORDS)):
            raise ValueError(f"{type(event).__name__} is not a message; only messages can be delivered")
        if isinstance(event, ExecutionStarted) and event.version is None:
            # A start that left the version open runs this app's latest, and says so in history.
            event = replace(event, version=self._app.orchestration_named(event.name).version)
        if self._divergence is not None and not self._finished:
            self._fail(Failure.from_exception(self._divergence))
        if self._finished:
            self._discard_after_end(event)
            return
        reason = self._refusal(event)
        if reason is not None:
            self._discard(event, *reason)
            return
        self._append(event)
        if isinstance(event, ExecutionStarted):
            self._name, self._input, self._parent = event.name, event.input, event.parent
            self._run_id, self._execution_id = event.run_id, event.execution_id
            self._version, self._trace, self._started_at = event.version, event.trace, event.timestamp
            origin = event.origin
            self._seed_execution = (origin.seed_execution if origin else None) or event.execution_id
            self._status = OrchestrationStatus.RUNNING
            for message in event.carried:  # ahead of anything delivered after them
                self._take(message)
                if self._finished:
                    return
        elif type(event) in _COMPLETES:
            self._arrived.add(event.task_id)  # type: ignore[attr-defined]
        self._take(event)

    def _take(self, event: HistoryEvent) -> None:
        """Act on an accepted message now, or keep it until resumed while suspended
        (operator messages act at once)."""
        if self._suspended and not isinstance(event, _OPERATOR):
            self._deferred.append(event)
            return
        self._act(event)

    def _refusal(self, event: HistoryEvent) -> tuple[str, str] | None:
        """Why ``event`` must be discarded (reason, detail), or ``None`` to apply it."""
        if isinstance(event, ExecutionStarted):
            if self._name is not None:
                return DiscardReason.DUPLICATE, "the execution has already started"
            return None
        if isinstance(event, ExecutionTerminated) and event.parent is not None:
            parent = self._parent if self._reports_to is _AS_RECORDED else self._reports_to
            if parent is None or not parent.is_task(event.parent):
                return DiscardReason.NOT_A_CHILD, (
                    f"a terminate cascading from instance {event.parent.instance_id!r} (task "
                    f"{event.parent.task_id}), whose child this instance is not"
                )
            return None
        kind = _COMPLETES.get(type(event))
        if kind is None:
            return None
        task_id: int = event.task_id  # type: ignore[attr-defined]
        if task_id in self._arrived:
            return DiscardReason.DUPLICATE, f"task {task_id} has already completed"
        task = self._open.get(task_id)
        if task is None:
            return DiscardReason.UNKNOWN_TASK, f"this execution never scheduled task {task_id}"
        if not isinstance(task, kind):
            return DiscardReason.UNKNOWN_TASK, f"task {task_id} is {task!r}, not a {kind.__name__}"
        return None

    def _act(self, event: HistoryEvent) -> None:
        """Apply an accepted message to the orchestration's state and resume the code."""
        match event:
            case ExecutionStarted():
                self._start()
            case (
                ActivityCompleted(task_id=task_id, result=result)
                | SubOrchestrationCompleted(task_id=task_id, result=result)
            ):
                self._open.pop(task_id)._resolve(result)
            case (
                ActivityFailed(task_id=task_id, failure=failure)
                | SubOrchestrationFailed(task_id=task_id, failure=failure)
            ):
                task = self._open.pop(task_id)
                assert isinstance(task, (ActivityTask, SubOrchestrationTask))
                task._fail(failure)
            case TimerFired(task_id=task_id):
                self._open.pop(task_id)._resolve(None)
            case EventRaised():
                self._deliver_event(event)
            case ExecutionTerminated(reason=reason):
                self._terminate(reason)
                return
            case ExecutionSuspended():
                self._suspended = True
                return
            case ExecutionResumed():
                self._suspended = False
                deferred, self._deferred = self._deferred, []
                for message in deferred:
                    if self._finished:
                        break
                    self._act(message)
                return
            case _:
                raise ValueError(f"{type(event).__name__} is not a message an orchestration can act on")
        self._drive()

    def _deliver_event(self, event: EventRaised) -> None:
        for waiter in self._waiters:
            if waiter.name == event.name:
                self._waiters.remove(waiter)
                waiter._deliver(event.input)
                return
        self._buffer.append(event)

    # --- driving the orchestrator ----------------------------------------------------------

    def _start(self) -> None:
        assert self._name is not None
        registration = self._app.orchestration_named(self._name, self._version)
        self._coro = registration.fn(self._ctx, self._input)
        self._step(None)

    def _drive(self) -> None:
        while not self._finished and self._awaiting is not None and self._awaiting.is_complete:
            self._step(self._awaiting)

    def _step(self, task: Task[Any] | None) -> None:
        """Resume the coroutine once: with ``task``'s outcome, or to start it."""
        self._awaiting = None
        returned, raised, yielded = False, None, None
        try:
            if task is None:
                yielded = self._coro.send(None)
            elif task.exception is not None:
                yielded = self._coro.throw(task.exception)
            else:
                yielded = self._coro.send(task._value)
        except StopIteration as stop:
            returned, yielded = True, stop.value
        except ContinueAsNewSignal:
            pass
        except Exception as exc:
            raised = exc
        if self._divergence is not None:
            raise _Diverged()
        if self._continue is not None:
            self._continued()
        elif returned:
            self._returned(yielded)
        elif raised is not None:
            self._fail(Failure.from_exception(_explain_asyncio(raised, self._name)))
        elif isinstance(yielded, Task):
            self._awaiting = yielded
        else:
            self._fail(Failure.from_exception(TypeError(_foreign_await_message(self._name, yielded))))

    def _returned(self, result: Any) -> None:
        try:
            dumps_payload(result, what=f"the result of orchestration {self._name!r}", limit=self._max_payload_bytes)
        except SerializationError as exc:
            self._fail(Failure.from_exception(exc))
            return
        self._emit(
            ExecutionCompleted(timestamp=self._now, result=result),
            CompleteOrchestration(result=result),
        )
        self._finish(OrchestrationStatus.COMPLETED, output=result)

    def _continued(self) -> None:
        assert self._continue is not None
        next_input, carry, _ = self._continue
        self._emit(ContinuedAsNew(timestamp=self._now, input=next_input), None)
        self._continue_pending = not self._replaying
        if carry:
            self._carried = list(self._buffer)
        self._finish(OrchestrationStatus.RUNNING)

    def _fail(self, failure: Failure) -> None:
        self._emit(
            ExecutionFailed(timestamp=self._now, failure=failure),
            FailOrchestration(failure=failure),
        )
        self._finish(OrchestrationStatus.FAILED, failure=failure)

    def _terminate(self, reason: str | None) -> None:
        children = [
            t for t in self._open.values() if isinstance(t, SubOrchestrationTask) and t.task_id not in self._arrived
        ]
        self._finish(OrchestrationStatus.TERMINATED, output=reason)  # the instance's termination_reason
        self._command(TerminateOrchestration(reason=reason))
        cascade = f"parent instance {self._instance_id!r} was terminated" + (f": {reason}" if reason else "")
        for child in children:
            self._command(
                TerminateSubOrchestration(instance_id=child.instance_id, task_id=child.task_id, reason=cascade)
            )

    def _finish(self, status: OrchestrationStatus, *, output: Any = None, failure: Failure | None = None) -> None:
        self._finished = True
        self._status, self._output, self._failure = status, output, failure
        self._awaiting = None
        if self._coro is not None:
            try:
                # Runs the orchestrator's finally blocks; commands they create are ignored.
                self._coro.close()
            except RuntimeError:
                pass  # it awaited while closing; nothing more can run anyway
            except Exception:
                pass  # an error raised while unwinding changes nothing now

    # --- recording -------------------------------------------------------------------------

    def _issue_task_id(self) -> int:
        self._next_task_id += 1
        return self._next_task_id

    def _append(self, event: HistoryEvent) -> None:
        if not self._replaying:
            self._new_events.append(event)
            self._length += 1

    def _command(self, command: Command) -> None:
        if not self._replaying:
            self._commands.append(command)

    def _emit(self, event: HistoryEvent, command: Command | None) -> None:
        """Record an output of the orchestrator: appended live, checked against history on
        replay. Outputs after the execution ended (from ``finally`` blocks) are ignored."""
        if self._finished:
            return
        if not self._replaying:
            self._append(event)
            if command is not None:
                self._commands.append(command)
        elif not isinstance(event, CustomStatusSet):
            self._match(event)

    def _discard(self, event: HistoryEvent, reason: str, detail: str | None) -> None:
        if self._replaying:
            self._diverge(
                f"at history index {self._at(self._cursor - 1)} the history holds {describe_event(event)}, "
                f"which should have been discarded ({reason}: {detail}); the history is "
                f"inconsistent",
                position=self._at(self._cursor - 1),
                recorded=describe_event(event),
                produced=f"a discard of it ({reason})",
            )
        message = encode_event(event)
        self._append(MessageDiscarded(timestamp=self._now, reason=reason, message=message, detail=detail))

    def _discard_after_end(self, event: HistoryEvent) -> None:
        """A message delivered after the execution ended in this turn. After a
        continue-as-new, operator messages (and external events, unless the orchestrator
        declined them) are not this execution's to drop: they are carried over to the next
        one, in arrival order (invariant 5)."""
        if self._continue is not None and self._status is OrchestrationStatus.RUNNING:
            carry_events = self._continue[1]
            if isinstance(event, _OPERATOR) or (carry_events and isinstance(event, EventRaised)):
                self._carried.append(event)
                detail = f"carried over to execution {self._execution_id + 1}"
                self._discard(event, DiscardReason.AFTER_COMPLETION, detail)
                return
        self._discard(event, DiscardReason.AFTER_COMPLETION, "the execution had already ended")

    # --- nondeterminism --------------------------------------------------------------------

    def _match(self, produced: HistoryEvent) -> None:
        """Check a replayed output against the next recorded output."""
        past = self._past
        index = self._cursor = self._next_output()
        recorded = past[index] if index < len(past) else None
        if recorded is not None and same_output(recorded, produced):
            self._cursor += 1
            return
        if recorded is not None and isinstance(recorded, OUTPUT_EVENTS):
            self._diverge(
                f"at history index {self._at(index)}{_task_of(recorded)} the history recorded "
                f"{describe_event(recorded)}, but the code now produced {describe_event(produced)}",
                position=self._at(index),
                recorded=describe_event(recorded),
                produced=describe_event(produced),
            )
        where = (
            f"the next recorded event is {type(recorded).__name__} at index {self._at(index)}"
            if recorded is not None
            else "the history ends there"
        )
        self._diverge(
            f"after history index {self._at(index - 1)}{_task_of(produced)} the code now produced "
            f"{describe_event(produced)}, which the history does not record ({where})",
            position=self._at(index),
            recorded=(
                "nothing (the history ends there)"
                if recorded is None
                else f"nothing (the next event is {describe_event(recorded)})"
            ),
            produced=describe_event(produced),
        )

    def _at(self, index: int) -> int:
        """The stored history index of position ``index`` of the replayed history (they
        differ after a rewind: :func:`perdure.core.rewind.effective_history`)."""
        positions = self._positions
        if 0 <= index < len(positions):
            return positions[index]
        return (positions[-1] + 1 if positions else 0) if index >= 0 else index

    def _next_output(self, patch_id: str | None = None) -> int:
        """The history index of the next recorded output the code can be matched with,
        skipping custom status records and deprecated patch markers (other than one of
        ``patch_id``, which the code is asking about)."""
        past, index = self._past, self._cursor
        while index < len(past):
            event = past[index]
            if not (
                isinstance(event, CustomStatusSet)
                or (isinstance(event, PatchMarker) and event.deprecated and event.patch_id != patch_id)
            ):
                break
            index += 1
        return index

    def _diverge(
        self, what: str, *, position: int | None = None, recorded: str | None = None, produced: str | None = None
    ) -> NoReturn:
        if self._divergence is None:
            self._divergence = NonDeterminismError(
                f"nondeterministic orchestration {self._name!r} (instance {self._instance_id!r}, "
                f"execution {self._execution_id}): {what}. {_REMEDY}",
                instance_id=self._instance_id,
                orchestration=self._name,
                execution_id=self._execution_id,
                position=position,
                recorded=recorded,
                produced=produced,
            )
        raise _Diverged()

    def _code_state(self) -> str:
        if self._finished:
            return "it has already ended"
        if self._awaiting is not None:
            return f"it is waiting on {self._awaiting!r}"
        return "it has not started" if self._coro is None else "it is waiting"

    # --- the turn --------------------------------------------------------------------------

    def _turn(self, replayed: int) -> Turn:
        commands = list(self._commands)
        if self._continue_pending:
            assert self._continue is not None
            next_input, _, version = self._continue
            commands.append(ContinueAsNew(input=next_input, carried=tuple(self._carried), version=version))
        return Turn(
            execution_id=self._execution_id,
            new_events=tuple(self._new_events),
            commands=tuple(commands),
            status=self._current_status(),
            output=self._output,
            failure=self._failure,
            custom_status=self._custom_status,
            waiting_on=WaitingOn() if self._finished else self._waiting_on(),
            parent=self._parent if self._reports_to is _AS_RECORDED else self._reports_to,
            replayed_events=replayed,
            version=self._version,
            trace=self._trace,
        )

    def _current_status(self) -> OrchestrationStatus:
        if self._finished or self._name is None:
            return self._status
        return OrchestrationStatus.SUSPENDED if self._suspended else OrchestrationStatus.RUNNING

    def _waiting_on(self) -> WaitingOn:
        activities, timers, children = [], [], []
        for task in self._open.values():
            if task.task_id in self._arrived:
                continue
            if isinstance(task, ActivityTask):
                activities.append(AwaitedActivity(task.task_id, task.name, task.attempt, task.scheduled_at))
            elif isinstance(task, TimerTask):
                if not task.superseded:
                    timers.append(AwaitedTimer(task.task_id, task.fire_at, task.purpose))
            else:
                children.append(AwaitedChild(task.task_id, task.name, task.instance_id, task.scheduled_at))
        events = [AwaitedEvent(w.name, w.since, w.timeout_at) for w in self._waiters]
        return WaitingOn(tuple(activities), tuple(timers), tuple(children), tuple(events))


def execute(app: App, instance_id: str, past: Sequence[HistoryEvent], new: Sequence[HistoryEvent]) -> Turn:
    """Run one turn on a fresh executor: replay ``past``, then apply ``new``."""
    return OrchestrationExecutor(app, instance_id).execute(past, new)


def same_output(recorded: HistoryEvent, produced: HistoryEvent) -> bool:
    """True if ``produced`` is the command ``recorded`` (same kind, task id and name; inputs
    are not compared)."""
    if type(recorded) is not type(produced):
        return False
    match recorded:
        case ActivityScheduled():
            assert isinstance(produced, ActivityScheduled)
            return (recorded.task_id, recorded.name) == (produced.task_id, produced.name)
        case TimerCreated():
            assert isinstance(produced, TimerCreated)
            return recorded.task_id == produced.task_id
        case SubOrchestrationCreated():
            assert isinstance(produced, SubOrchestrationCreated)
            return (recorded.task_id, recorded.name, recorded.instance_id) == (
                produced.task_id,
                produced.name,
                produced.instance_id,
            )
        case _:
            return True


def describe_event(event: HistoryEvent) -> str:
    """A short description for error messages, e.g. ``ActivityScheduled 'charge' (task 3)``."""
    match event:
        case ActivityScheduled(task_id=task_id, name=name):
            return f"ActivityScheduled {name!r} (task {task_id})"
        case TimerCreated(task_id=task_id):
            return f"TimerCreated (task {task_id})"
        case SubOrchestrationCreated(task_id=task_id, name=name, instance_id=child):
            return f"SubOrchestrationCreated {name!r} as instance {child!r} (task {task_id})"
        case ExecutionCompleted():
            return "ExecutionCompleted (the orchestrator returned)"
        case ExecutionFailed(failure=failure):
            return f"ExecutionFailed (the orchestrator raised {failure.type})"
        case ContinuedAsNew():
            return "ContinuedAsNew (the orchestrator called continue_as_new)"
        case PatchMarker(patch_id=patch_id, deprecated=deprecated):
            call = "deprecate_patch" if deprecated else "patched"
            return f"PatchMarker {patch_id!r} (the orchestrator called ctx.{call}({patch_id!r}))"
        case EventRaised(name=name):
            return f"EventRaised {name!r}"
        case _:
            task_id = getattr(event, "task_id", None)
            return type(event).__name__ + (f" (task {task_id})" if task_id is not None else "")


def _task_of(event: HistoryEvent) -> str:
    task_id = getattr(event, "task_id", None)
    return f" (task {task_id})" if task_id is not None else ""


_REMEDY_AWAIT = (
    "Orchestrations run without an event loop and may only await tasks from the context: use "
    "ctx.create_timer instead of asyncio.sleep, and ctx.call_activity for I/O or any other "
    "asynchronous work."
)


def _foreign_await_message(name: str | None, awaited: object) -> str:
    what = "None (a bare yield, as from asyncio.sleep(0))" if awaited is None else describe(awaited)
    return f"orchestration {name!r} awaited {what}, which is not a perdure task. {_REMEDY_AWAIT}"


def _explain_asyncio(exc: Exception, name: str | None) -> Exception:
    """Turn the ``RuntimeError`` asyncio raises without a running loop into a clear error."""
    if not isinstance(exc, RuntimeError):
        return exc
    what = None
    tb = exc.__traceback__
    while tb is not None and what is None:
        code = tb.tb_frame.f_code
        if "/asyncio/" in code.co_filename.replace("\\", "/"):
            what = f"awaited asyncio.{code.co_name}(...)"
        tb = tb.tb_next
    if what is None and str(exc) == "no running event loop":
        what = "used asyncio"
    if what is None:
        return exc
    error = TypeError(f"orchestration {name!r} {what}, which needs a running event loop. {_REMEDY_AWAIT}")
    error.__cause__ = exc
    return error
