"""A clear error when an optional extra is missing."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from perdure.errors import PerdureError


class MissingExtraError(PerdureError, ImportError):
    """An optional dependency of perdure is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{module.split('.')[0]} is not installed; install it with: pip install 'perdure[{extra}]'"
        ) from None
