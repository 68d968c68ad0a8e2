"""Finding the user's :class:`~perdure.App` from ``--app module:attribute``."""

from __future__ import annotations

import importlib
import sys
import traceback

from perdure.cli.base import CommandFailed
from perdure.core.registry import App
from perdure.errors import InvalidInputError

APP_HELP = "Where your App is, as module:attribute (e.g. shop:app or myproject.flows:app); env PERDURE_APP."


def load_app(ref: str) -> App:
    """Import ``module:attribute`` (from the working directory first) and return the App it
    names. A module that cannot be found is one error line; an error raised while the
    module is imported is shown with its original traceback."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise InvalidInputError(f"--app must look like module:attribute, got {ref!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CommandFailed(
                f"cannot import module {module_name!r} given by --app {ref}: {exc}; run perdure from the "
                f"directory that holds it, or add that directory to PYTHONPATH"
            ) from None
        raise CommandFailed(
            f"importing module {module_name!r} (--app {ref}) failed: {type(exc).__name__}: {exc}",
            details=_user_traceback(exc),
        ) from None
    except Exception as exc:
        raise CommandFailed(
            f"importing module {module_name!r} (--app {ref}) failed: {type(exc).__name__}: {exc}",
            details=_user_traceback(exc),
        ) from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise InvalidInputError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise InvalidInputError(f"{ref} is a {type(app).__name__}, not a perdure.App")
    return app


def _user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback from the first frame of the user's code (the import machinery's
    frames and this module's left out)."""
    machinery = (__file__, importlib.__file__)
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename.startswith("<frozen") or tb.tb_frame.f_code.co_filename in machinery
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
