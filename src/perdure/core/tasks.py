"""Tasks: what an orchestrator awaits.

A task is perdure's own awaitable. Awaiting it yields the task itself to the executor's
driver, which sends the result back into the orchestrator (or throws the error) once the
matching history event has completed the task. No event loop is involved.

The executor completes the leaf tasks (activity, timer, sub-orchestration, external event);
composite tasks (retry, ``when_all``, ``when_any``) observe their children and complete
themselves, always in history order, so a replay completes them exactly as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar

from perdure.core.failure import Failure
from perdure.core.retry import RetryPolicy
from perdure.errors import (
    ActivityError,
    OrchestrationError,
    SubOrchestrationError,
    TaskTimeoutError,
)

T = TypeVar("T")

# Orders completions so that composites built from already-complete tasks can tell which one
# finished first. Only the relative order within one executor matters, and that follows history.
_completion_order = itertools.count()


class Task(Generic[T]):
    """Something an orchestrator can ``await``: it completes with a result or fails with an
    exception when history says so."""

    def __init__(self) -> None:
        self._complete = False
        self._value: Any = None
        self._exception: BaseException | None = None
        self._order = -1
        self._observers: list[Task[Any]] = []

    @property
    def is_complete(self) -> bool:
        """True once the task has a result or an exception."""
        return self._complete

    @property
    def is_failed(self) -> bool:
        """True if the task completed with an exception."""
        return self._exception is not None

    @property
    def result(self) -> T:
        """The task's result; raises its exception if it failed, ``RuntimeError`` if pending."""
        if not self._complete:
            raise RuntimeError(f"{self!r} is not complete yet; await it first")
        if self._exception is not None:
            raise self._exception
        return self._value

    @property
    def exception(self) -> BaseException | None:
        """The exception the task failed with, or ``None``."""
        return self._exception

    def __await__(self) -> Generator[Task[T], Any, T]:
        return (yield self)

    def _resolve(self, value: Any) -> None:
        self._settle(value, None)

    def _reject(self, exception: BaseException) -> None:
        self._settle(None, exception)

    def _settle(self, value: Any, exception: BaseException | None) -> None:
        if self._complete:
            return
        self._complete = True
        self._value = value
        self._exception = exception
        self._order = next(_completion_order)
        for observer in self._observers:
            observer._child_settled(self)

    def _observe(self, child: Task[Any]) -> None:
        child._observers.append(self)

    def _child_settled(self, child: Task[Any]) -> None:
        """Called when a task this one observes completes."""

    def _state(self) -> str:
        if not self._complete:
            return "pending"
        return "failed" if self._exception is not None else "completed"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state()}>"


class ActivityTask(Task[T]):
    """One attempt of an activity, scheduled as ``task_id``."""

    def __init__(self, task_id: int, name: str, attempt: int, scheduled_at: float) -> None:
        super().__init__()
        self.task_id = task_id
        self.name = name
        self.attempt = attempt
        self.scheduled_at = scheduled_at
        self.failure: Failure | None = None

    def _fail(self, failure: Failure) -> None:
        self.failure = failure
        self._reject(ActivityError(f"activity {self.name!r} failed: {failure}", failure))

    def __repr__(self) -> str:
        state = self._state()
        return f"<ActivityTask {self.name!r} task {self.task_id} attempt {self.attempt} {state}>"


class SubOrchestrationTask(Task[T]):
    """One attempt of a sub-orchestration: child ``instance_id`` scheduled as ``task_id``."""

    def __init__(self, task_id: int, name: str, instance_id: str, scheduled_at: float) -> None:
        super().__init__()
        self.task_id = task_id
        self.name = name
        self.instance_id = instance_id
        self.scheduled_at = scheduled_at
        self.failure: Failure | None = None

    def _fail(self, failure: Failure) -> None:
        self.failure = failure
        message = f"sub-orchestration {self.name!r} (instance {self.instance_id!r}) failed: {failure}"
        self._reject(SubOrchestrationError(message, failure))

    def __repr__(self) -> str:
        return f"<SubOrchestrationTask {self.name!r} instance {self.instance_id!r} task {self.task_id} {self._state()}>"


class TimerTask(Task[None]):
    """A durable timer due at ``fire_at`` (UTC epoch seconds); ``purpose`` is ``"timer"``,
    ``"retry"`` or ``"timeout"``. A timeout timer whose wait ended first is ``superseded``:
    it still fires, but nothing waits on it any more."""

    def __init__(self, task_id: int, fire_at: float, purpose: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.fire_at = fire_at
        self.purpose = purpose
        self.superseded = False

    def __repr__(self) -> str:
        return f"<TimerTask task {self.task_id} {self.purpose} at {self.fire_at} {self._state()}>"


class EventTask(Task[T]):
    """A wait for external event ``name``, begun at ``since``; with a ``timer`` it fails with
    :class:`TaskTimeoutError` if the timer fires first, and ``on_timeout`` withdraws the wait."""

    def __init__(
        self,
        name: str,
        since: float,
        *,
        timer: TimerTask | None = None,
        timeout: timedelta | None = None,
        on_timeout: Callable[[EventTask[Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.since = since
        self.timer = timer
        self.timeout = timeout
        self._on_timeout = on_timeout
        if timer is not None:
            self._observe(timer)

    @property
    def timeout_at(self) -> float | None:
        """When the wait times out (UTC epoch seconds), or ``None`` without a timeout."""
        return self.timer.fire_at if self.timer is not None else None

    def _deliver(self, value: Any) -> None:
        self._resolve(value)
        if self.timer is not None:
            self.timer.superseded = True

    def _child_settled(self, child: Task[Any]) -> None:
        if self._complete:
            return
        self._reject(TaskTimeoutError(f"timed out after {self.timeout} waiting for external event {self.name!r}"))
        if self._on_timeout is not None:
            self._on_timeout(self)

    def __repr__(self) -> str:
        return f"<EventTask {self.name!r} {self._state()}>"


class RetryableTask(Task[T]):
    """An activity or sub-orchestration retried by a :class:`RetryPolicy` with durable timers.

    ``start_attempt(n)`` schedules attempt ``n`` (a new task id each time); after a retryable
    failure ``start_timer(fire_at)`` creates the "retry" timer whose firing starts the next
    attempt. ``clock()`` is the orchestration's time, for the policy's total ``timeout``.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        what: str,
        start_attempt: Callable[[int], ActivityTask[Any] | SubOrchestrationTask[Any]],
        start_timer: Callable[[float], TimerTask],
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self.policy = policy
        self.what = what
        self.attempt = 1
        self._start_attempt = start_attempt
        self._start_timer = start_timer
        self._clock = clock
        self._first_at = clock()
        self._timer: TimerTask | None = None
        self._current = start_attempt(1)
        self._observe(self._current)

    def _child_settled(self, child: Task[Any]) -> None:
        if self._complete:
            return
        if child is self._timer:
            self._timer = None
            self.attempt += 1
            self._current = self._start_attempt(self.attempt)
            self._observe(self._current)
        elif child is self._current:
            self._attempt_settled(self._current)

    def _attempt_settled(self, task: ActivityTask[Any] | SubOrchestrationTask[Any]) -> None:
        failure = task.failure
        if failure is None:
            self._resolve(task._value)
            return
        now = self._clock()
        try:
            delay = self.policy.next_delay(failure, self.attempt, timedelta(seconds=now - self._first_at))
        except Exception as exc:  # the user's retry_if raised: surface it in the orchestrator
            self._reject(exc)
            return
        if delay is None:
            self._reject(self._give_up(task, failure))
            return
        self._timer = self._start_timer(now + delay.total_seconds())
        self._observe(self._timer)

    def _give_up(self, task: Task[Any], failure: Failure) -> OrchestrationError:
        attempts = f"{self.attempt} attempt{'s' if self.attempt != 1 else ''}"
        if not self.policy.is_retryable(failure):
            why = f" ({failure.type} is not retryable)"
        elif self.attempt < self.policy.max_attempts:
            why = f" (retry timeout of {self.policy.timeout} reached)"
        else:
            why = ""
        kind = type(task.exception) if isinstance(task.exception, OrchestrationError) else ActivityError
        return kind(f"{self.what} failed after {attempts}{why}: {failure}", failure)

    def __repr__(self) -> str:
        return f"<RetryableTask {self.what} attempt {self.attempt} {self._state()}>"


class WhenAllTask(Task[list[Any]]):
    """Completes with the children's results, in the given order, once all completed; fails
    with the first child failure (in completion order) as soon as it happens."""

    def __init__(self, children: Sequence[Task[Any]]) -> None:
        super().__init__()
        self.children = tuple(children)
        self._pending = sum(not c.is_complete for c in self.children)
        failed = [c for c in self.children if c.is_failed]
        if failed:
            self._reject(min(failed, key=lambda c: c._order).exception)  # type: ignore[arg-type]
        elif self._pending == 0:
            self._resolve([c._value for c in self.children])
        for child in self.children:
            if not child.is_complete:
                self._observe(child)

    def _child_settled(self, child: Task[Any]) -> None:
        if self._complete:
            return
        if child.exception is not None:
            self._reject(child.exception)
            return
        self._pending -= 1
        if self._pending == 0:
            self._resolve([c._value for c in self.children])


class WhenAnyTask(Task[Task[Any]]):
    """Completes with the first child to complete (succeeded or failed) — the task object
    itself; the others keep running and their completions are applied as usual."""

    def __init__(self, children: Sequence[Task[Any]]) -> None:
        super().__init__()
        self.children = tuple(children)
        done = [c for c in self.children if c.is_complete]
        if done:
            self._resolve(min(done, key=lambda c: c._order))
        else:
            for child in self.children:
                self._observe(child)

    def _child_settled(self, child: Task[Any]) -> None:
        self._resolve(child)
