"""Records: frozen, slotted dataclasses that are cheap to build.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (its own
``__setattr__`` refuses), which costs several times a plain attribute store, and the
store's and the runtime's records are built dozens of times per orchestration step (with
the dataclass's own ``__init__``, close to a tenth of the instructions a start → result
costs the worker's process).
:func:`frozen_record` makes the very same dataclass (frozen and slotted: equality, hashing,
``repr``, pickling, ``dataclasses.replace`` and the refusal to set an attribute are the
dataclass's own) and gives it an ``__init__`` of the same signature that sets each field
through its slot's descriptor instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")


class _Factory:
    """The default of a parameter whose field has a ``default_factory``."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


@overload
def frozen_record(cls: type[T], /) -> type[T]: ...


@overload
def frozen_record(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen_record(cls: type[T] | None = None, /, *, kw_only: bool = False) -> Any:
    """``@dataclass(frozen=True, slots=True, kw_only=kw_only)`` with a faster ``__init__``
    (same parameters, defaults and default factories, and ``__post_init__`` if defined)."""

    def wrap(cls: type[T]) -> type[T]:
        made = dataclasses.dataclass(frozen=True, slots=True, kw_only=kw_only)(cls)
        made.__init__ = _slot_init(made)  # type: ignore[misc]
        return made

    return wrap if cls is None else wrap(cls)


def _slot_init(cls: type) -> Callable[..., None]:
    """An ``__init__`` for the frozen, slotted dataclass ``cls`` that does what the
    dataclass's own does, setting fields with their slots' ``__set__``."""
    fields = dataclasses.fields(cls)
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    self_name = "__record_self__" if any(f.name == "self" for f in fields) else "self"

    def parameter(f: dataclasses.Field[Any]) -> str:
        if f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
            return f"{f.name}=_default_{f.name}"
        if f.default_factory is not dataclasses.MISSING:
            return f"{f.name}=_FACTORY"
        return f.name

    positional = [parameter(f) for f in fields if f.init and not f.kw_only]
    keyword = [parameter(f) for f in fields if f.init and f.kw_only]
    parameters = [self_name, *positional, *(["*", *keyword] if keyword else [])]
    lines = []
    for f in fields:
        slot = next(c.__dict__[f.name] for c in cls.__mro__ if f.name in c.__dict__)
        names[f"_set_{f.name}"] = slot.__set__
        factory = f.default_factory is not dataclasses.MISSING
        if factory:
            names[f"_factory_{f.name}"] = f.default_factory
        if f.init:
            value = f"_factory_{f.name}() if {f.name} is _FACTORY else {f.name}" if factory else f.name
        elif factory:
            value = f"_factory_{f.name}()"
        elif f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
            value = f"_default_{f.name}"
        else:
            continue  # init=False without a default: left unset, as the dataclass leaves it
        lines.append(f"    _set_{f.name}({self_name}, {value})")
    if hasattr(cls, "__post_init__"):
        lines.append(f"    {self_name}.__post_init__()")
    source = f"def __init__({', '.join(parameters)}):\n" + ("\n".join(lines) or "    pass") + "\n"
    exec(source, names)
    init: Callable[..., None] = names["__init__"]
    generated = cls.__init__
    init.__qualname__ = generated.__qualname__
    init.__module__ = generated.__module__
    init.__annotations__ = dict(generated.__annotations__)
    init.dataclass_init = generated  # type: ignore[attr-defined]  # for the tests: what it stands for
    return init
