"""What every ``perdure`` command shares: the group and command classes that turn errors
into one line and an exit code, the options every command accepts (``--store``,
``--log-level``, ``--log-format``), and the lazily opened store and client.

Exit codes: 0 success (an instance completed), 1 the instance failed or was terminated,
or the command failed (bad input, store error), 2 usage error or no such instance,
3 timed out (the instance did not finish within ``--wait``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from perdure.client import Client
from perdure.core.registry import App
from perdure.errors import PerdureError
from perdure.logs import FORMATS, LEVELS, configure_logging
from perdure.store.base import Store
from perdure.store.open import open_store, public_url

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STORE = "sqlite:///perdure.db"
EXIT_OK = 0
EXIT_FAILED = 1  # the instance failed or was terminated; or the command failed
EXIT_USAGE = 2
EXIT_NOT_FOUND = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130  # a second Ctrl-C stopped the worker at once

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CommandFailed(PerdureError):
    """A command's own failure: ``message`` as the error line, exit ``code``, and optional
    ``details`` printed after it (an import's traceback)."""

    def __init__(self, message: str, code: int = EXIT_FAILED, details: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class State:
    """The settings of one invocation (from the group, then the subcommand, options) and
    the store it opens on first use: created if missing only for commands that create."""

    def __init__(self) -> None:
        self.store_url = DEFAULT_STORE
        self.log_level: str | None = None  # None: INFO (the demo: WARNING)
        self.log_format = "text"
        self._store: Store | None = None
        self.app: App | None = None

    @property
    def public_url(self) -> str:
        """The store URL without its password."""
        return public_url(self.store_url)

    def open(self, *, create: bool = False) -> Store:
        """The store; ``create`` makes (or migrates) it if needed, else a missing store
        is an error."""
        if self._store is None:
            try:
                self._store = open_store(self.store_url, create=create)
            except PerdureError:
                raise
            except Exception as exc:
                raise PerdureError(f"cannot open store {self.public_url}: {exc}") from exc
        return self._store

    def client(self, *, create: bool = False) -> Client:
        """A client on the store (checking names against ``--app`` when given)."""
        return Client(self.open(create=create), app=self.app)

    def close(self) -> None:
        """Close the store if it was opened."""
        if self._store is not None:
            self._store.close()


def _remember(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.ensure_object(State), attr, value)

    return callback


def common_options(*, group: bool = False, store: bool = True) -> Callable[[F], F]:
    """``--store``, ``--log-level`` and ``--log-format``, on the group (with their
    environment variables) and on every command (overriding the group's)."""

    def env(name: str) -> str | None:
        return name if group else None

    def decorate(fn: F) -> F:
        options = [
            click.option(
                "--log-format",
                type=click.Choice(FORMATS),
                envvar=env("PERDURE_LOG_FORMAT"),
                expose_value=False,
                callback=_remember("log_format"),
                help="Log lines as readable text (default) or one JSON object per line; env PERDURE_LOG_FORMAT.",
            ),
            click.option(
                "--log-level",
                type=click.Choice(LEVELS, case_sensitive=False),
                envvar=env("PERDURE_LOG_LEVEL"),
                expose_value=False,
                callback=_remember("log_level"),
                help="The least severe log lines shown (default INFO); env PERDURE_LOG_LEVEL.",
            ),
        ]
        if store:
            options.append(
                click.option(
                    "--store",
                    metavar="URL",
                    envvar=env("PERDURE_STORE"),
                    expose_value=False,
                    callback=_remember("store_url"),
                    help=f"The store: sqlite:///path.db or postgresql://user@host/db; env PERDURE_STORE "
                    f"(default {DEFAULT_STORE}).",
                )
            )
        for option in options:
            fn = option(fn)
        return fn

    return decorate


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return " ".join(text.split())


def fail(message: str, code: int = EXIT_FAILED, details: str | None = None) -> None:
    """Print ``error: message`` (and ``details``) on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    if details:
        click.echo(details.rstrip("\n"), err=True)
    sys.exit(code)


class Command(click.Command):
    """A perdure command: sets up logging from the options before it runs."""

    def invoke(self, ctx: click.Context) -> Any:
        """Configure logging, then run the command."""
        state = ctx.ensure_object(State)
        configure_logging(state.log_level or "INFO", state.log_format)
        return super().invoke(ctx)


class Group(click.Group):
    """Turns every error into one line on stderr and an exit code (see the module
    docstring). An unexpected error is one line too (its type and message);
    ``PERDURE_DEBUG=1`` lets its traceback through. Bare ``perdure`` prints the help."""

    command_class = Command

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line (``standalone_mode`` is always off: errors are handled here)."""
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message())
            sys.exit(EXIT_USAGE)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            fail(one_line(exc.format_message()) + hint, EXIT_USAGE)
        except click.ClickException as exc:
            fail(one_line(exc.format_message()), exc.exit_code)
        except click.exceptions.Abort:
            fail("aborted")
        if isinstance(result, int) and result:  # a click Exit (e.g. --help) with a status
            sys.exit(result)
        return result

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; map perdure's errors to exit codes."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except CommandFailed as exc:
            fail(one_line(str(exc)), exc.code, exc.details)
        except LookupError as exc:  # InstanceNotFoundError; args[0], as KeyError's str() adds quotes
            fail(one_line(str(exc.args[0]) if exc.args else str(exc)), EXIT_NOT_FOUND)
        except TimeoutError as exc:
            fail(one_line(str(exc)), EXIT_TIMEOUT)
        except BrokenPipeError:
            # Whoever read the output stopped (``perdure history ID | head``): stop quietly,
            # with stdout pointed elsewhere so the interpreter's last flush cannot fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except (PerdureError, ValueError, OSError, ImportError) as exc:
            fail(one_line(str(exc)))
        except Exception as exc:
            if os.environ.get("PERDURE_DEBUG"):
                raise
            message = one_line(str(exc))
            fail(f"unexpected {type(exc).__name__}: {message} (PERDURE_DEBUG=1 shows the traceback)")
