"""The App: a registry of orchestrations and activities by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from perdure.core.records import frozen_record
from perdure.errors import RegistrationError

F = TypeVar("F", bound=Callable[..., Any])


@frozen_record
class Registration:
    """One registered function: its name, the function, whether it is ``async def``,
    (activities) whether it is a local activity, and (orchestrations) its version."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    local: bool = False
    version: int = 1


def version_key(name: str, version: int | None) -> str:
    """The routing key of an orchestration version, ``name@version``; ``name@*`` for an
    instance not yet pinned to a version (started without one, by a client without the
    app: the worker that takes its first turn runs its own latest version)."""
    return f"{name}@{'*' if version is None else version}"


def versions_in(keys: Iterable[str], name: str) -> list[int]:
    """The versions of orchestration ``name`` among routing ``keys`` (a worker's record), in
    order; a bare ``name`` (a worker from before versions) counts as version 1."""
    versions = set()
    for key in keys:
        key_name, _, version = key.rpartition("@")
        if key == name:
            versions.add(1)
        elif key_name == name and version.isdigit():
            versions.add(int(version))
    return sorted(versions)


class App:
    """Holds the orchestrations and activities a worker can run.

    ``@app.orchestration`` and ``@app.activity`` register a function under its ``__name__``
    (or ``name=``); registering a name twice raises :class:`RegistrationError`, except for
    orchestrations of different ``version=`` s, which run side by side.
    """

    def __init__(self) -> None:
        self.orchestrations: dict[str, Registration] = {}
        """The latest version of each orchestration, by name."""
        self.orchestration_versions: dict[str, dict[int, Registration]] = {}
        """Every version of each orchestration: name -> version -> registration."""
        self.activities: dict[str, Registration] = {}

    @overload
    def orchestration(self, fn: F, /) -> F: ...
    @overload
    def orchestration(self, *, name: str | None = None, version: int = 1) -> Callable[[F], F]: ...
    def orchestration(self, fn: Any = None, /, *, name: str | None = None, version: int = 1) -> Any:
        """Register an ``async def fn(ctx, input)`` orchestrator (bare or with ``name=``).

        ``version`` (an integer from 1, the default) lets changed code run next to the old:
        register each version under the same name, and a new instance runs the latest one
        while a running instance stays on the version it started with (docs/upgrading.md).
        """
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RegistrationError(f"orchestration version must be an integer >= 1, got {version!r}")

        def register(f: F) -> F:
            if not inspect.iscoroutinefunction(f):
                raise RegistrationError(
                    f"orchestration {getattr(f, '__qualname__', f)!r} must be an 'async def' function"
                )
            reg_name = _name_of(name, f, "orchestration")
            versions = self.orchestration_versions.setdefault(reg_name, {})
            if version in versions:
                raise RegistrationError(
                    f"version {version} of orchestration {reg_name!r} is already registered (by "
                    f"{versions[version].fn.__qualname__}); register the new code as another version"
                )
            registration = Registration(reg_name, f, True, version=version)
            versions[version] = registration
            latest = self.orchestrations.get(reg_name)
            if latest is None or version > latest.version:
                self.orchestrations[reg_name] = registration
            _remember_name(f, "orchestration", reg_name)
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
        reg_name = _name_of(name, fn, kind)
        if reg_name in table:
            raise RegistrationError(
                f"{kind} name {reg_name!r} is already registered (by {table[reg_name].fn.__qualname__}); "
                f"pass name= to register under another name"
            )
        table[reg_name] = Registration(reg_name, fn, inspect.iscoroutinefunction(fn), local)
        _remember_name(fn, kind, reg_name)

    def orchestration_named(self, name: str, version: int | None = None) -> Registration:
        """Version ``version`` of the orchestration registered as ``name`` (the latest when
        ``None``), or :class:`RegistrationError` naming what is registered."""
        versions = self.orchestration_versions.get(name)
        if not versions:
            raise RegistrationError(f"no orchestration named {name!r} is registered")
        if version is None:
            return self.orchestrations[name]
        try:
            return versions[version]
        except KeyError:
            known = ", ".join(str(v) for v in sorted(versions))
            raise RegistrationError(
                f"version {version} of orchestration {name!r} is not registered (registered: {known})"
            ) from None

    def version_keys(self) -> tuple[str, ...]:
        """The routing keys of every registered version, sorted (what a worker reports)."""
        return tuple(sorted(version_key(n, v) for n, versions in self.orchestration_versions.items() for v in versions))

    def routing_keys(self) -> frozenset[str]:
        """The routing keys of every registered version (:func:`version_key`), and
        ``name@*`` for each name: the instances a worker of this app may take."""
        keys = {version_key(name, None) for name in self.orchestration_versions}
        for name, versions in self.orchestration_versions.items():
            keys.update(version_key(name, v) for v in versions)
        return frozenset(keys)

    def activity_named(self, name: str) -> Registration:
        """The activity registered as ``name``, or :class:`RegistrationError`."""
        try:
            return self.activities[name]
        except KeyError:
            raise RegistrationError(f"no activity named {name!r} is registered") from None


def _name_of(name: str | None, fn: Callable[..., Any], kind: str) -> str:
    if not callable(fn):
        raise RegistrationError(f"{kind} must be a function, got {type(fn).__name__}")
    reg_name = name if name is not None else getattr(fn, "__name__", None)
    if not isinstance(reg_name, str) or not reg_name.strip():
        raise RegistrationError(f"{kind} name must be a non-empty string, got {reg_name!r}")
    return reg_name


def _remember_name(fn: Callable[..., Any], kind: str, name: str) -> None:
    """Remember the registered name on the function so calls can pass the function itself."""
    try:
        names = fn.__dict__.setdefault("__perdure_names__", {})
        names[kind] = name
    except AttributeError:
        pass


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
