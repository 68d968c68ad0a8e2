"""A test environment for your own orchestrations: :class:`Environment`.

It runs your app on a private in-memory SQLite store with virtual time and a worker
driven on the test's own thread (:class:`~perdure.testing.StepWorker`): the real turns,
replay, retries and timers, without threads, sleeps or a real clock. Whenever nothing can
run, virtual time jumps to the next due timer, retry or scheduled event, so a 30-day
timer costs nothing. Activities can be replaced per environment
(:meth:`Environment.mock_activity`), events raised at once or at a virtual time.
"""

from __future__ import annotations

import copy
import heapq
import inspect
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from perdure.client import Client, InstanceState
from perdure.core.failure import Failure
from perdure.core.history import HistoryEvent
from perdure.core.payload import dumps_payload
from perdure.core.records import frozen_record
from perdure.core.registry import App, registered_name
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceNotFoundError, InvalidInputError, RegistrationError
from perdure.store.open import open_store
from perdure.testing.faults import FakeClock
from perdure.testing.stepper import StepWorker, next_due, work_once

MAX_STEPS = 10_000  # worker passes and time jumps one run may take before it is called stuck


@frozen_record
class RunResult:
    """An instance as a test sees it: ``status``, ``output`` (a completed instance's
    result), ``failure`` (a failed one's error), ``custom_status``, the current execution's
    ``history``, and ``elapsed``: the virtual time from its creation to its last change.
    ``state`` is the full :class:`~perdure.InstanceState`."""

    instance_id: str
    status: OrchestrationStatus
    output: Any
    failure: Failure | None
    custom_status: Any
    history: list[HistoryEvent]
    elapsed: timedelta
    state: InstanceState


class Environment:
    """Run ``app``'s orchestrations in a test, on virtual time (see the module docstring).

    ``start`` is the virtual time to begin at (a timezone-aware datetime; default
    2023-11-14 22:13:20 UTC). ``client`` is a :class:`~perdure.Client` on the environment's
    store, ``clock`` its :class:`~perdure.testing.FakeClock`. Use it as a context manager,
    or call :meth:`close`; the ``perdure_env`` pytest fixture does that for you.
    """

    def __init__(self, app: App, *, start: datetime | None = None) -> None:
        if not isinstance(app, App):
            raise InvalidInputError(f"Environment needs a perdure.App, got {type(app).__name__}")
        if start is not None and (not isinstance(start, datetime) or start.tzinfo is None):
            raise InvalidInputError(f"start must be a timezone-aware datetime, got {start!r}")
        self.app = app
        self.clock = FakeClock() if start is None else FakeClock(start.timestamp())
        self.store = open_store("sqlite://:memory:", clock=self.clock)
        self.client = Client(self.store, app=app)
        self._mocks: dict[str, Callable[..., Any]] = {}
        self._worker: StepWorker | None = None
        self._events: list[tuple[float, int, str, str, Any]] = []  # a heap: (due, order, instance, name, data)
        self._order = itertools.count()

    # -- setting up --

    def mock_activity(self, activity: str | Callable[..., Any], replacement: Callable[..., Any]) -> None:
        """Run ``replacement`` instead of ``activity`` (the function or its registered name)
        in this environment: it gets the activity's input and its return value is the
        result; what it raises fails the activity (and retry policies apply). Replace
        activities before running anything: tasks the worker holds when a replacement is
        made run again once their lease expires in virtual time."""
        name = registered_name(activity, "activity")
        if name not in self.app.activities:
            known = ", ".join(sorted(self.app.activities)) or "none"
            raise RegistrationError(f"activity {name!r} is not registered in the app (registered: {known})")
        if not callable(replacement):
            raise InvalidInputError(
                f"the replacement of activity {name!r} must be a function (for a fixed result: lambda _: value), "
                f"got {type(replacement).__name__}"
            )
        self._mocks[name] = replacement
        self._worker = None  # the next step builds a worker with the replacement

    # -- driving instances --

    def start(
        self, orchestration: str | Callable[..., Any], input: Any = None, *, instance_id: str | None = None
    ) -> str:
        """Start ``orchestration`` (the function or its registered name) with ``input`` and
        return the instance id. Nothing runs until :meth:`run_until_complete` or
        :meth:`advance`."""
        return self.client.start(orchestration, input, instance_id=instance_id)

    def raise_event(
        self,
        instance_id: str,
        name: str,
        data: Any = None,
        *,
        at: datetime | None = None,
        after: timedelta | None = None,
    ) -> None:
        """Raise external event ``name`` with ``data`` to the instance: now, or at virtual
        time ``at``, or ``after`` a delay from now. A scheduled event is raised when the
        environment's time reaches it while it runs (it is dropped if the instance has
        finished by then)."""
        if at is not None and after is not None:
            raise InvalidInputError("give at= or after=, not both")
        if at is None and after is None:
            self.client.raise_event(instance_id, name, data)
            return
        if after is not None:
            if not isinstance(after, timedelta) or after < timedelta(0):
                raise InvalidInputError(f"after must be a timedelta of 0 or more, got {after!r}")
            due = self.clock() + after.total_seconds()
        else:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise InvalidInputError(f"at must be a timezone-aware datetime, got {at!r}")
            due = at.timestamp()
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"event name must be a non-empty string, got {name!r}")
        dumps_payload(data, what=f"data of event {name!r}", limit=self.client.max_payload_bytes)
        heapq.heappush(self._events, (due, next(self._order), instance_id, name, data))

    def run_until_complete(self, instance_id: str, *, within: timedelta | None = None) -> RunResult:
        """Run everything, moving virtual time whenever nothing can run, until the instance
        is COMPLETED, FAILED or TERMINATED; return its :class:`RunResult`. Raises
        ``AssertionError`` (saying what it waits for) if it cannot finish: nothing is left
        to run, or ``within`` virtual time has passed."""
        deadline = None if within is None else self.clock() + within.total_seconds()
        self._run(until=instance_id, deadline=deadline)
        result = self.result(instance_id)
        if not result.status.is_terminal:
            limit = "" if within is None else f" within {within} of virtual time"
            raise AssertionError(
                f"instance {instance_id!r} did not finish{limit}: it is {result.status.value}, "
                f"waiting for {_waits(result.state)}"
            )
        return result

    def advance(self, duration: timedelta) -> None:
        """Run everything that comes due in the next ``duration`` of virtual time, and stop
        there (``timedelta(0)``: only what is due now)."""
        if not isinstance(duration, timedelta) or duration < timedelta(0):
            raise InvalidInputError(f"duration must be a timedelta of 0 or more, got {duration!r}")
        deadline = self.clock() + duration.total_seconds()
        self._run(until=None, deadline=deadline)
        self.clock.set(max(self.clock(), deadline))

    # -- reading --

    def result(self, instance_id: str) -> RunResult:
        """The instance as it is now (finished or not)."""
        state = self.client.get(instance_id, history=True)
        if state is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r} in this environment")
        return RunResult(
            instance_id=state.instance_id,
            status=state.status,
            output=state.output,
            failure=state.failure,
            custom_status=state.custom_status,
            history=state.history or [],
            elapsed=state.last_updated_at - state.created_at,
            state=state,
        )

    def now(self) -> datetime:
        """The environment's virtual time (UTC)."""
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- life --

    def close(self) -> None:
        """Drop the store. Idempotent."""
        self.store.close()

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop --

    def _run(self, *, until: str | None, deadline: float | None) -> None:
        """Run the worker until ``until`` is terminal, or nothing is left to run before
        ``deadline``: whenever it finds no work, time jumps to the next due scheduled
        event, timer, retry or lease expiry."""
        worker = self._step_worker()
        for _ in range(MAX_STEPS):
            if until is not None and self._finished(until):
                return
            if work_once([worker]):
                continue
            now = self.clock()
            due = next_due(self.store, now)
            event_due = self._events[0][0] if self._events else None
            if event_due is not None and (due is None or event_due <= due):
                if deadline is not None and event_due > deadline:
                    return
                self.clock.set(max(now, event_due))
                self._raise_due()
                continue
            if due is None or (deadline is not None and due > deadline):
                return
            self.clock.set(due)
        raise AssertionError(f"the instances did not settle in {MAX_STEPS} steps (an endless loop of timers?)")

    def _raise_due(self) -> None:
        now = self.clock()
        while self._events and self._events[0][0] <= now:
            _, _, instance_id, name, data = heapq.heappop(self._events)
            state = self.client.get(instance_id)
            if state is not None and not state.is_terminal:
                self.client.raise_event(instance_id, name, data)

    def _finished(self, instance_id: str) -> bool:
        state = self.client.get(instance_id)
        if state is None:
            raise InstanceNotFoundError(f"no instance with id {instance_id!r} in this environment")
        return state.is_terminal

    def _step_worker(self) -> StepWorker:
        if self._worker is None:
            self._worker = StepWorker(self._app_with_mocks(), self.store, "perdure-test")
        return self._worker

    def _app_with_mocks(self) -> App:
        """The app with the replaced activities (a copy: the user's app is not changed)."""
        if not self._mocks:
            return self.app
        app = copy.copy(self.app)
        app.activities = {
            name: registration
            if name not in self._mocks
            else replace(registration, fn=self._mocks[name], is_async=inspect.iscoroutinefunction(self._mocks[name]))
            for name, registration in self.app.activities.items()
        }
        return app


def _waits(state: InstanceState) -> str:
    waiting = state.waiting_on
    parts = [f"event {e.name!r}" for e in waiting.events]
    parts += [f"activity {a.name!r}" for a in waiting.activities]
    parts += [f"child {c.instance_id!r}" for c in waiting.children]
    parts += [f"a timer due {datetime.fromtimestamp(t.fire_at, UTC):%Y-%m-%d %H:%M:%S} UTC" for t in waiting.timers]
    return ", ".join(parts) or "nothing it can get (see client.diagnose)"
