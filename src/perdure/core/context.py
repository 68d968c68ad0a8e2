"""OrchestrationContext: the API an orchestrator uses to do anything durable.

Every method is deterministic: it records a command (through the executor that runs the
orchestration, the :class:`OrchestrationHost`) or reads state derived from history. Inputs
are checked here, at the call, so a bad value fails in the orchestrator's own code.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol

from perdure.core.ids import validate_instance_id
from perdure.core.payload import dumps_payload
from perdure.core.registry import registered_name
from perdure.core.retry import RetryPolicy
from perdure.core.tasks import (
    ActivityTask,
    EventTask,
    RetryableTask,
    SubOrchestrationTask,
    Task,
    TimerTask,
    WhenAllTask,
    WhenAnyTask,
)
from perdure.errors import InvalidInputError

_UUID_NAMESPACE = uuid.UUID("9b6c1c4e-2f7e-5a41-8e0c-7d1f3a5b2c60")
_MASK64 = (1 << 64) - 1


class ContinueAsNewSignal(BaseException):
    """Unwinds the orchestrator after ``ctx.continue_as_new``. It derives from
    ``BaseException`` so that ``except Exception`` in user code cannot swallow it."""


class OrchestrationHost(Protocol):
    """What the context needs from the executor running it (see
    :class:`perdure.core.executor.OrchestrationExecutor`)."""

    @property
    def instance_id(self) -> str: ...
    @property
    def execution_id(self) -> int: ...
    @property
    def is_replaying(self) -> bool: ...
    @property
    def seed_execution(self) -> int: ...
    @property
    def now(self) -> float: ...
    def schedule_activity(
        self, name: str, input: Any, attempt: int, max_attempts: int | None = None
    ) -> ActivityTask[Any]: ...
    def start_sub_orchestration(
        self, name: str, input: Any, instance_id: str | None, version: int | None = None
    ) -> SubOrchestrationTask[Any]: ...
    def create_timer(self, fire_at: float, purpose: str) -> TimerTask: ...
    def wait_for_event(self, name: str, timeout: timedelta | None) -> EventTask[Any]: ...
    def set_custom_status(self, status: Any) -> None: ...
    def continue_as_new(self, input: Any, carry_over_events: bool, version: int | str | None = None) -> None: ...
    def patched(self, patch_id: str, deprecated: bool) -> bool: ...


class ReplaySafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that emits nothing while the orchestration replays, so each message is
    logged once, when the code first runs; records carry ``instance_id`` and
    ``execution_id`` as extra attributes (and ``task_id`` None, as records about a task have
    it: :mod:`perdure.logs`)."""

    def __init__(self, logger: logging.Logger, context: OrchestrationContext) -> None:
        super().__init__(logger, {})
        self._context = context

    def isEnabledFor(self, level: int) -> bool:
        """False while replaying; otherwise the wrapped logger decides."""
        return not self._context.is_replaying and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Add the instance and execution ids to the record."""
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("instance_id", self._context.instance_id)
        extra.setdefault("execution_id", self._context.execution_id)
        extra.setdefault("task_id", None)
        kwargs["extra"] = extra
        return msg, kwargs


class OrchestrationContext:
    """The orchestrator's handle on durable work, time and randomness.

    Everything here is replay-safe: call it freely; never use the wall clock, ``random``,
    ``uuid4``, threads, asyncio or I/O in an orchestrator (do those in activities).
    """

    def __init__(self, host: OrchestrationHost) -> None:
        self._host = host
        self._uuid_counter = 0
        self._prng_state: int | None = None
        self.logger = ReplaySafeLogger(logging.getLogger("perdure.orchestration"), self)
        """A logger adapter on ``perdure.orchestration``, silent while replaying."""

    @property
    def instance_id(self) -> str:
        """This orchestration instance's id."""
        return self._host.instance_id

    @property
    def execution_id(self) -> int:
        """The execution number: 1, then 2, 3, ... after each continue-as-new."""
        return self._host.execution_id

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs over recorded history (its commands already exist)."""
        return self._host.is_replaying

    # --- durable work ------------------------------------------------------------------

    def call_activity(
        self,
        activity: str | Callable[..., Any],
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> Task[Any]:
        """Schedule activity ``activity`` (a registered function or its name) with ``input``.

        The task completes with the activity's return value, or fails with
        :class:`perdure.ActivityError` once ``retry`` (if given) gives up.
        """
        name = registered_name(activity, "activity")
        dumps_payload(input, what=f"input of activity {name!r}")
        host = self._host
        if retry is None:
            return host.schedule_activity(name, input, 1)
        _check_policy(retry)
        return RetryableTask(
            retry,
            f"activity {name!r}",
            lambda attempt: host.schedule_activity(name, input, attempt, retry.max_attempts),
            lambda fire_at: host.create_timer(fire_at, "retry"),
            lambda: host.now,
        )

    def call_sub_orchestration(
        self,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        instance_id: str | None = None,
        retry: RetryPolicy | None = None,
        version: int | None = None,
    ) -> Task[Any]:
        """Start orchestration ``orchestration`` as a child instance and wait for its result.

        Without ``instance_id`` the child gets a generated id, unique across executions and
        (with ``retry``) across attempts. The child runs ``version`` of the orchestration, by
        default the latest this app registers (or, if this app does not register it, the
        latest of the worker that takes it). Fails with :class:`perdure.SubOrchestrationError`.
        """
        name = registered_name(orchestration, "orchestration")
        dumps_payload(input, what=f"input of sub-orchestration {name!r}")
        if instance_id is not None:
            validate_instance_id(instance_id)
        if version is not None:
            check_version(version)
        host = self._host
        if retry is None:
            return host.start_sub_orchestration(name, input, instance_id, version)
        _check_policy(retry)
        return RetryableTask(
            retry,
            f"sub-orchestration {name!r}",
            lambda _attempt: host.start_sub_orchestration(name, input, instance_id, version),
            lambda fire_at: host.create_timer(fire_at, "retry"),
            lambda: host.now,
        )

    def create_timer(self, fire_at: datetime | timedelta) -> Task[None]:
        """A durable timer: at ``fire_at`` (an aware datetime) or ``fire_at`` after ``now()``."""
        if isinstance(fire_at, timedelta):
            return self._host.create_timer(self._host.now + fire_at.total_seconds(), "timer")
        if isinstance(fire_at, datetime):
            if fire_at.tzinfo is None or fire_at.utcoffset() is None:
                raise InvalidInputError(
                    f"create_timer needs an aware datetime (e.g. tzinfo=UTC), got naive {fire_at!r}"
                )
            return self._host.create_timer(fire_at.timestamp(), "timer")
        raise InvalidInputError(f"create_timer takes a datetime or a timedelta, got {fire_at!r}")

    def wait_for_event(self, name: str, *, timeout: timedelta | None = None) -> Task[Any]:
        """Wait for external event ``name``; events are handed out oldest first, one per wait.

        With ``timeout`` the task fails with :class:`perdure.TaskTimeoutError` if no event
        came in time.
        """
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"event name must be a non-empty string, got {name!r}")
        if timeout is not None and (not isinstance(timeout, timedelta) or timeout < timedelta(0)):
            raise InvalidInputError(f"timeout must be a timedelta >= 0, got {timeout!r}")
        return self._host.wait_for_event(name, timeout)

    def when_all(self, tasks: Iterable[Task[Any]]) -> Task[list[Any]]:
        """A task completing with the list of results (in the given order) once all
        completed, or failing with the first failure as soon as one fails."""
        return WhenAllTask(_tasks("when_all", tasks))

    def when_any(self, tasks: Iterable[Task[Any]]) -> Task[Task[Any]]:
        """A task completing with the first of ``tasks`` to complete (the task object: read
        its ``result``). The others keep running."""
        children = _tasks("when_any", tasks)
        if not children:
            raise InvalidInputError("when_any needs at least one task")
        return WhenAnyTask(children)

    # --- lifecycle and status ----------------------------------------------------------

    def continue_as_new(
        self, input: Any = None, *, carry_over_events: bool = True, version: int | str | None = None
    ) -> NoReturn:
        """End this execution and start the next one with ``input`` and a fresh history.

        External events received but not consumed are passed on to the next execution
        unless ``carry_over_events`` is false. Open tasks are abandoned. The next execution
        runs the same version of the orchestration as this one, or ``version``: a version
        number, or ``"latest"`` for the latest this app registers (the clean moment for an
        eternal orchestration to move to new code). Does not return.
        """
        dumps_payload(input, what="continue_as_new input")
        if version is not None and version != "latest":
            check_version(version)
        self._host.continue_as_new(input, bool(carry_over_events), version)
        raise ContinueAsNewSignal()

    def set_custom_status(self, status: Any) -> None:
        """Publish a JSON-serialisable status for clients (``InstanceState.custom_status``)."""
        dumps_payload(status, what="custom status")
        self._host.set_custom_status(status)

    # --- changing code under running instances ---------------------------------------------

    def patched(self, patch_id: str) -> bool:
        """Whether to take the new code path of a change named ``patch_id``.

        An execution that reaches this call live records a marker in its history and gets
        True; replaying, it gets True only if its history has that marker here. So
        instances that ran this point under the old code keep the old path, and the others
        take the new one. The first answer for an id holds for the whole execution::

            if ctx.patched("send-receipt"):
                await ctx.call_activity(send_receipt, order)

        Once no running instance can still take the old path, replace the call with
        :meth:`deprecate_patch` and remove the old branch (docs/upgrading.md, "Patches").
        """
        return self._host.patched(_patch_id(patch_id), False)

    def deprecate_patch(self, patch_id: str) -> None:
        """The step after :meth:`patched`: the code always takes the new path, instances
        whose history has the marker of ``patch_id`` still replay, and so do instances that
        run this code (they record a deprecated marker, which a later version of the code may
        drop together with this call)."""
        self._host.patched(_patch_id(patch_id), True)

    # --- deterministic helpers ---------------------------------------------------------

    def now(self) -> datetime:
        """The current orchestration time: when this turn started, as an aware UTC datetime.
        It is the same on every replay."""
        return datetime.fromtimestamp(self._host.now, tz=UTC)

    def new_uuid(self) -> uuid.UUID:
        """A UUID that is the same on every replay (derived from the instance id, the
        execution and how many were made before)."""
        self._uuid_counter += 1
        name = f"{self.instance_id}\x00{self._host.seed_execution}\x00{self._uuid_counter}"
        return uuid.uuid5(_UUID_NAMESPACE, name)

    def random(self) -> float:
        """A pseudo-random float in [0, 1), the same sequence on every replay (seeded from
        the instance id and execution)."""
        if self._prng_state is None:
            seed = hashlib.sha256(f"{self.instance_id}\x00{self._host.seed_execution}".encode()).digest()
            self._prng_state = int.from_bytes(seed[:8], "big")
        self._prng_state, value = _splitmix64(self._prng_state)
        return (value >> 11) / float(1 << 53)


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64: the next state and a 64-bit output."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def _tasks(what: str, tasks: Iterable[Task[Any]]) -> list[Task[Any]]:
    if isinstance(tasks, Task):
        raise InvalidInputError(f"{what} takes a list of tasks, got a single task")
    children = list(tasks)
    for child in children:
        if not isinstance(child, Task):
            raise InvalidInputError(
                f"{what} takes tasks from the context (ctx.call_activity, ctx.create_timer, ...), got {child!r}"
            )
    return children


def check_version(version: object) -> int:
    """``version`` if it is an orchestration version (an integer from 1), else
    :class:`InvalidInputError`."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInputError(f"an orchestration version is an integer >= 1, got {version!r}")
    return version


def _patch_id(patch_id: object) -> str:
    if not isinstance(patch_id, str) or not patch_id.strip():
        raise InvalidInputError(f"a patch id must be a non-empty string, got {patch_id!r}")
    return patch_id


def _check_policy(retry: object) -> None:
    if not isinstance(retry, RetryPolicy):
        raise InvalidInputError(f"retry must be a perdure.RetryPolicy, got {retry!r}")
