"""``perdure.activity_info()``: what an activity is running for."""

from __future__ import annotations

from contextvars import ContextVar

from perdure.core.records import frozen_record
from perdure.errors import PerdureError


@frozen_record
class ActivityInfo:
    """The activity being run: its instance, execution, task id, name, attempt (1 for the
    first try) and the worker running it."""

    instance_id: str
    execution_id: int
    task_id: int
    name: str
    attempt: int
    worker_id: str


_current: ContextVar[ActivityInfo | None] = ContextVar("perdure_activity_info", default=None)


def activity_info() -> ActivityInfo:
    """The :class:`ActivityInfo` of the activity running in this thread or task."""
    info = _current.get()
    if info is None:
        raise PerdureError("activity_info() is only available inside a running activity")
    return info


def running_activity() -> ActivityInfo | None:
    """The :class:`ActivityInfo` of the activity running in this thread or task, if any."""
    return _current.get()


def set_activity_info(info: ActivityInfo | None) -> object:
    """Set the current activity (runtime use); returns a token for :func:`reset_activity_info`."""
    return _current.set(info)


def reset_activity_info(token: object) -> None:
    """Undo :func:`set_activity_info`."""
    _current.reset(token)  # type: ignore[arg-type]
