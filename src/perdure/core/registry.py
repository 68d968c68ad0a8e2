"""The App: a registry of orchestrations and activities by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from perdure.errors import RegistrationError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered function: its name, the function, whether it is ``async def``, and
    (activities) whether it is a local activity."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    local: bool = False


class App:
    """Holds the orchestrations and activities a worker can run.

    ``@app.orchestration`` and ``@app.activity`` register a function under its ``__name__``
    (or ``name=``); registering a name twice raises :class:`RegistrationError`.
    """

    def __init__(self) -> None:
        self.orchestrations: dict[str, Registration] = {}
        self.activities: dict[str, Registration] = {}

    @overload
    def orchestration(self, fn: F, /) -> F: ...
    @overload
    def orchestration(self, *, name: str | None = None) -> Callable[[F], F]: ...
    def orchestration(self, fn: Any = None, /, *, name: str | None = None) -> Any:
        """Register an ``async def fn(ctx, input)`` orchestrator (bare or with ``name=``)."""

        def register(f: F) -> F:
            if not inspect.iscoroutinefunction(f):
                raise RegistrationError(
                    f"orchestration {getattr(f, '__qualname__', f)!r} must be an 'async def' function"
                )
            self._add(self.orchestrations, "orchestration", name, f)
            return f

        return register(fn) if fn is not None else register

    @overload
    def activity(self, fn: F, /) -> F: ...
    @overload
    def activity(self, *, name: str | None = None, local: bool = False) -> Callable[[F], F]: ...
    def activity(self, fn: Any = None, /, *, name: str | None = None, local: bool = False) -> Any:
        """Register an activity: a plain or ``async def`` function of one JSON input.

        ``local=True`` makes it a *local activity*: the worker that runs the orchestration's
        turn runs it at once, on its dispatch thread, and hands the result straight to the
        next turn, so a chain of local activities commits once instead of once per activity.
        For short calls only: see docs/orchestrations.md, "Local activities"."""
        if not isinstance(local, bool):
            raise RegistrationError(f"activity local= must be True or False, got {local!r}")

        def register(f: F) -> F:
            self._add(self.activities, "activity", name, f, local=local)
            return f

        return register(fn) if fn is not None else register

    def _add(
        self, table: dict[str, Registration], kind: str, name: str | None, fn: Callable[..., Any], local: bool = False
    ) -> None:
        if not callable(fn):
            raise RegistrationError(f"{kind} must be a function, got {type(fn).__name__}")
        reg_name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(reg_name, str) or not reg_name.strip():
            raise RegistrationError(f"{kind} name must be a non-empty string, got {reg_name!r}")
        if reg_name in table:
            raise RegistrationError(
                f"{kind} name {reg_name!r} is already registered (by {table[reg_name].fn.__qualname__}); "
                f"pass name= to register under another name"
            )
        table[reg_name] = Registration(reg_name, fn, inspect.iscoroutinefunction(fn), local)
        # Remember the registered name on the function so calls can pass the function itself.
        try:
            names = fn.__dict__.setdefault("__perdure_names__", {})
            names[kind] = reg_name
        except AttributeError:
            pass

    def orchestration_named(self, name: str) -> Registration:
        """The orchestration registered as ``name``, or :class:`RegistrationError`."""
        try:
            return self.orchestrations[name]
        except KeyError:
            raise RegistrationError(f"no orchestration named {name!r} is registered") from None

    def activity_named(self, name: str) -> Registration:
        """The activity registered as ``name``, or :class:`RegistrationError`."""
        try:
            return self.activities[name]
        except KeyError:
            raise RegistrationError(f"no activity named {name!r} is registered") from None


def registered_name(target: str | Callable[..., Any], kind: str) -> str:
    """The name to use for ``target``: the string itself, or the name a function was registered
    under (its ``__name__`` if it was never registered). ``kind`` is ``"orchestration"`` or
    ``"activity"``."""
    if isinstance(target, str):
        if not target:
            raise RegistrationError(f"{kind} name must not be empty")
        return target
    if callable(target):
        names = getattr(target, "__perdure_names__", None)
        if names and kind in names:
            return names[kind]
        name = getattr(target, "__name__", None)
        if isinstance(name, str):
            return name
    raise RegistrationError(f"expected an {kind} function or its registered name, got {target!r}")
