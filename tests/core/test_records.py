"""frozen_record: the dataclass it makes behaves as ``@dataclass(frozen=True, slots=True)``,
and its faster ``__init__`` does what the dataclass's own would, for every record of perdure."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pickle
import pkgutil

import pytest

import perdure
from perdure.core.records import frozen_record


def _records() -> list[type]:
    found = []
    for module in pkgutil.walk_packages(perdure.__path__, "perdure."):
        if module.name.endswith("__main__"):
            continue
        namespace = vars(importlib.import_module(module.name))
        for value in namespace.values():
            if (
                inspect.isclass(value)
                and value.__module__ == module.name
                and hasattr(value.__init__, "dataclass_init")
                and value not in found
            ):
                found.append(value)
    return found


RECORDS = _records()


def test_perdures_frozen_slotted_dataclasses_are_records():
    assert len(RECORDS) > 60
    names = {cls.__name__ for cls in RECORDS}
    assert {"TurnCommit", "InstanceRecord", "ActivityWorkItem", "ExecutionStarted", "InstanceState"} <= names


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def test_a_records_init_takes_what_the_dataclass_init_takes_and_sets_what_it_sets(cls: type) -> None:
    fast, generated = inspect.signature(cls.__init__), inspect.signature(cls.__init__.dataclass_init)
    factories = {f.name for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING}
    assert list(fast.parameters) == list(generated.parameters)
    for name, parameter in fast.parameters.items():
        other = generated.parameters[name]
        assert (parameter.kind, parameter.annotation) == (other.kind, other.annotation), name
        if name in factories:
            assert parameter.default is not inspect.Parameter.empty
        else:
            assert parameter.default == other.default, name

    # Every required parameter gets an object of its own; the defaults stay as they are.
    required = {
        name: object()
        for name, parameter in list(fast.parameters.items())[1:]
        if parameter.default is inspect.Parameter.empty
    }
    built, expected = object.__new__(cls), object.__new__(cls)
    try:
        cls.__init__(built, **required)
    except Exception as exc:  # a __post_init__ that checks its input: both refuse alike
        with pytest.raises(type(exc)):
            cls.__init__.dataclass_init(expected, **required)
        return
    cls.__init__.dataclass_init(expected, **required)
    for f in dataclasses.fields(cls):
        if f.name in required:
            assert getattr(built, f.name) is required[f.name], f.name
        elif hasattr(expected, f.name):
            assert getattr(built, f.name) == getattr(expected, f.name), f.name
        else:
            assert not hasattr(built, f.name), f.name


@frozen_record
class _Point:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)


@frozen_record(kw_only=True)
class _Labelled(_Point):
    label: str
    seen: list[str] = dataclasses.field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.seen.append(self.label)


def test_a_record_is_a_frozen_slotted_dataclass():
    point = _Point(1, 2)
    assert dataclasses.is_dataclass(point) and not hasattr(point, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 3  # type: ignore[misc]
    assert point == _Point(1, 2, []) and point != _Point(2, 2)
    assert repr(point) == "_Point(x=1, y=2, tags=[])"
    assert dataclasses.replace(point, y=5) == _Point(1, 5)
    assert pickle.loads(pickle.dumps(point)) == point
    assert _Point(1).tags is not _Point(1).tags  # a fresh list each


def test_a_records_init_fills_inherited_fields_keyword_only_fields_and_runs_post_init():
    labelled = _Labelled(7, label="a")
    assert (labelled.x, labelled.y, labelled.tags, labelled.label, labelled.seen) == (7, 0, [], "a", ["a"])
    with pytest.raises(TypeError):
        _Labelled(7, "a")  # type: ignore[misc]
