"""The ``perdure`` command: a thin shell over :class:`perdure.Client` and the worker.

Errors are one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from perdure.client import Client, InstanceState
from perdure.core.history import encode_event
from perdure.core.registry import App
from perdure.errors import InstanceNotFoundError, InvalidInputError, PerdureError
from perdure.runtime.options import WorkerOptions
from perdure.store.base import Store
from perdure.store.open import open_store
from perdure.web.cli import web

_WORKER = WorkerOptions()  # the defaults the worker command shows

DEFAULT_STORE = "sqlite:///perdure.db"
EXIT_ERROR = 1
EXIT_NOT_FOUND = 2
EXIT_USAGE = 2

console = Console(highlight=False, soft_wrap=True)


class _Group(click.Group):
    """Turns every error into one line on stderr and an exit code: 2 for usage errors and
    unknown instances, 1 for the rest. An unexpected error is one line too (its type and
    message); ``PERDURE_DEBUG=1`` lets its traceback through."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False  # click's usage errors are several lines
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(_one_line(exc.format_message()) + hint, EXIT_USAGE)
        except click.ClickException as exc:
            _fail(_one_line(exc.format_message()), exc.exit_code)
        except click.exceptions.Abort:
            _fail("aborted")
        if isinstance(result, int) and result:  # a click Exit (e.g. --help) with a status
            sys.exit(result)
        return result

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except LookupError as exc:  # InstanceNotFoundError; args[0], as KeyError's str() adds quotes
            _fail(str(exc.args[0]) if exc.args else str(exc), EXIT_NOT_FOUND)
        except (PerdureError, ValueError, OSError, ImportError) as exc:
            _fail(_one_line(str(exc)))
        except Exception as exc:
            if os.environ.get("PERDURE_DEBUG"):
                raise
            message = _one_line(str(exc))
            _fail(f"unexpected {type(exc).__name__}: {message} (PERDURE_DEBUG=1 shows the traceback)")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _State:
    def __init__(self, url: str) -> None:
        self.url = url
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            try:
                self._store = open_store(self.url)
            except PerdureError:
                raise
            except Exception as exc:
                raise PerdureError(f"cannot open store {self.url}: {exc}") from exc
        return self._store

    @property
    def client(self) -> Client:
        return Client(self.store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not valid JSON ({exc}): {text[:60]!r}") from None


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_url",
    envvar="PERDURE_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store URL (sqlite:///path.db or postgresql://user@host/db); env PERDURE_STORE.",
)
@click.version_option(package_name="perdure")
@click.pass_context
def cli(ctx: click.Context, store_url: str) -> None:
    """perdure: durable orchestrations for Python."""
    state = _State(store_url)
    ctx.obj = state
    ctx.call_on_close(state.close)


@cli.command()
@click.option("--store", "demo_store", default=None, help="Store URL for the demo (default: a temporary SQLite file).")
def demo(demo_store: str | None) -> None:
    """Run an order workflow that shows the engine's features, live."""
    from perdure.demo import run_demo

    sys.exit(run_demo(demo_store, echo=click.echo))


@cli.command()
@click.option("--app", "app_ref", required=True, help="Where the App is: module:attribute, e.g. myproject.flows:app.")
@click.option(
    "--activity-concurrency", type=click.IntRange(min=1), default=_WORKER.activity_concurrency, show_default=True
)
@click.option(
    "--orchestration-concurrency",
    type=click.IntRange(min=1),
    default=_WORKER.orchestration_concurrency,
    show_default=True,
)
@click.option(
    "--lease",
    "lease_seconds",
    type=click.FloatRange(min=0.1),
    default=_WORKER.lease_seconds,
    show_default=True,
    help="Lease duration in seconds.",
)
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=_WORKER.poll_interval, show_default=True)
@click.option(
    "--local-activity-budget",
    type=click.FloatRange(min=0),
    default=_WORKER.local_activity_budget,
    show_default=True,
    help="Seconds a round may spend running local activities before it commits.",
)
@click.pass_obj
def worker(
    state: _State,
    app_ref: str,
    activity_concurrency: int,
    orchestration_concurrency: int,
    lease_seconds: float,
    poll_interval: float,
    local_activity_budget: float,
) -> None:
    """Run a worker for an App until interrupted (Ctrl-C or SIGTERM stop it gracefully)."""
    from perdure.runtime.worker import Worker

    app = load_app(app_ref)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    w = Worker(
        app,
        state.store,
        activity_concurrency=activity_concurrency,
        orchestration_concurrency=orchestration_concurrency,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
        local_activity_budget=local_activity_budget,
    )
    with w:
        click.echo(
            f"worker {w.worker_id} running {len(app.orchestrations)} orchestrations and "
            f"{len(app.activities)} activities on {state.url}; Ctrl-C to stop",
            err=True,
        )
        while not stop.wait(0.5):
            pass
    click.echo(f"worker stopped: {w.stats()}", err=True)


def load_app(ref: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise InvalidInputError(f"--app must look like module:attribute, got {ref!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise InvalidInputError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise InvalidInputError(f"{ref} is a {type(app).__name__}, not a perdure.App")
    return app


@cli.command()
@click.argument("orchestration")
@click.argument("input_json", required=False)
@click.option("--id", "instance_id", default=None, help="Instance id (default: random).")
@click.option("--wait", "wait_seconds", type=float, default=None, help="Wait up to this many seconds for the result.")
@json_option
@click.pass_obj
def start(
    state: _State,
    orchestration: str,
    input_json: str | None,
    instance_id: str | None,
    wait_seconds: float | None,
    as_json: bool,
) -> None:
    """Start ORCHESTRATION with INPUT_JSON; print the instance id."""
    client = state.client
    iid = client.start(orchestration, _json_arg(input_json, "input"), instance_id=instance_id)
    if wait_seconds is None:
        _print_json({"instance_id": iid}) if as_json else click.echo(iid)
        return
    result = client.wait(iid, timeout=wait_seconds)
    _show_state(result, as_json)


@cli.command()
@click.argument("instance_id")
@click.option("--history", "with_history", is_flag=True, help="Include the history.")
@json_option
@click.pass_obj
def status(state: _State, instance_id: str, with_history: bool, as_json: bool) -> None:
    """Show an instance's status."""
    _show_state(_require(state.client, instance_id, with_history), as_json)


@cli.command("list")
@click.option("--status", "statuses", multiple=True, help="Filter by status (repeatable).")
@click.option("--name", default=None, help="Filter by orchestration name.")
@click.option("--created-after", type=click.DateTime(), default=None, help="UTC creation time lower bound.")
@click.option("--created-before", type=click.DateTime(), default=None, help="UTC creation time upper bound.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", default=None, help="The next_cursor of the previous page.")
@json_option
@click.pass_obj
def list_(
    state: _State,
    statuses: tuple[str, ...],
    name: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List instances, newest first."""
    page = state.client.list(
        status=statuses or None,
        name=name,
        created_after=created_after.replace(tzinfo=UTC) if created_after else None,
        created_before=created_before.replace(tzinfo=UTC) if created_before else None,
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        _print_json({"items": [s.to_dict() for s in page.items], "next_cursor": page.next_cursor})
        return
    table = Table("instance", "name", "status", "exec", "created", "updated", "custom status")
    for s in page.items:
        table.add_row(
            s.instance_id,
            s.name,
            s.status.value,
            str(s.execution_id),
            s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            s.last_updated_at.strftime("%H:%M:%S"),
            _short(s.custom_status),
        )
    console.print(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@cli.command()
@click.argument("instance_id")
@json_option
@click.pass_obj
def history(state: _State, instance_id: str, as_json: bool) -> None:
    """Show the history of an instance's current execution."""
    s = _require(state.client, instance_id, True)
    events = [encode_event(e) for e in s.history or []]
    if as_json:
        _print_json(events)
        return
    table = Table("#", "time (UTC)", "event", "details")
    for i, data in enumerate(events):
        kind = data.pop("kind")
        data.pop("v", None)
        ts = data.pop("timestamp", 0) or 0
        data.pop("traceback", None)
        if isinstance(data.get("failure"), dict):
            data["failure"] = {k: v for k, v in data["failure"].items() if k != "traceback"}
        when = datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3] if ts else ""
        table.add_row(str(i), when, kind, _short(data, 100))
    console.print(table)


@cli.command("raise")
@click.argument("instance_id")
@click.argument("event_name")
@click.argument("data_json", required=False)
@click.pass_obj
def raise_(state: _State, instance_id: str, event_name: str, data_json: str | None) -> None:
    """Raise external event EVENT_NAME with DATA_JSON to an instance."""
    state.client.raise_event(instance_id, event_name, _json_arg(data_json, "event data"))
    click.echo(f"raised {event_name} to {instance_id}")


def _control(verb: str, method: Callable[[Client], Callable[..., None]]) -> Callable[..., None]:
    @click.argument("instance_id")
    @click.option("--reason", default=None, help="Recorded in the history.")
    @click.pass_obj
    def command(state: _State, instance_id: str, reason: str | None) -> None:
        method(state.client)(instance_id, reason)
        click.echo(f"{verb} requested for {instance_id}")

    return command


cli.command("terminate", help="Terminate an instance and its unfinished children.")(
    _control("terminate", lambda c: c.terminate)
)
cli.command("suspend", help="Suspend an instance; messages are kept until resume.")(
    _control("suspend", lambda c: c.suspend)
)
cli.command("resume", help="Resume a suspended instance.")(_control("resume", lambda c: c.resume))


@cli.command()
@click.argument("instance_id")
@click.pass_obj
def purge(state: _State, instance_id: str) -> None:
    """Delete a terminal instance and its history."""
    state.client.purge(instance_id)
    click.echo(f"purged {instance_id}")


@cli.command()
@click.argument("instance_id", required=False)
@click.option(
    "--stalled-after",
    type=click.FloatRange(min=0),
    default=None,
    help="Fleet report: seconds without progress before a live instance is examined (default 300).",
)
@click.option(
    "--limit",
    type=click.IntRange(0, 10_000),
    default=50,
    show_default=True,
    help="Fleet report: most instances diagnosed.",
)
@json_option
@click.pass_obj
def diagnose(state: _State, instance_id: str | None, stalled_after: float | None, limit: int, as_json: bool) -> None:
    """Explain why an instance is not finishing; without INSTANCE_ID, report on the fleet."""
    from perdure.diagnosis import render_diagnosis, render_fleet

    client = state.client
    if instance_id is not None:
        diagnosis = client.diagnose(instance_id)
        _print_json(diagnosis.to_dict()) if as_json else click.echo(render_diagnosis(diagnosis))
        return
    overrides = {} if stalled_after is None else {"stalled_after": stalled_after}
    report = client.diagnose_all(limit=limit, **overrides)
    _print_json(report.to_dict()) if as_json else click.echo(render_fleet(report))


# -- output helpers --


def _require(client: Client, instance_id: str, with_history: bool) -> InstanceState:
    s = client.get(instance_id, history=with_history)
    if s is None:
        raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
    return s


def _short(value: Any, limit: int = 60) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show_state(s: InstanceState, as_json: bool) -> None:
    if as_json:
        _print_json(s.to_dict())
        return
    table = Table(show_header=False, box=None)
    table.add_row("instance", s.instance_id)
    table.add_row("name", s.name)
    table.add_row("status", s.status.value)
    table.add_row("execution", str(s.execution_id))
    table.add_row("created", s.created_at.isoformat())
    table.add_row("updated", s.last_updated_at.isoformat())
    table.add_row("input", _short(s.input, 200))
    if s.output is not None:
        table.add_row("output", _short(s.output, 200))
    if s.failure is not None:
        table.add_row("failure", str(s.failure))
    if s.custom_status is not None:
        table.add_row("custom status", _short(s.custom_status, 200))
    if not s.is_terminal and not s.waiting_on.is_empty():
        table.add_row("waiting on", _short(s.waiting_on.to_dict(), 200))
    table.add_row("history events", str(s.history_event_count))
    console.print(table)
    if s.history is not None:
        for i, event in enumerate(s.history):
            console.print(f"  {i:4d} {type(event).__name__}")


cli.add_command(web)


def main() -> None:
    """Console entry point."""
    cli(prog_name="perdure")


if __name__ == "__main__":
    main()
