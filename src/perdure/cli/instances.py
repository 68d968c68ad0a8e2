"""Commands on single instances: start, result, status, history, raise, and list."""

from __future__ import annotations

import click

from perdure.cli.apps import APP_HELP, load_app
from perdure.cli.base import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, CommandFailed, State, common_options
from perdure.cli.inputs import filter_options, make_filter, payload_arg
from perdure.cli.main import cli
from perdure.cli.render import history_json, print_json, show_history, show_list, show_state
from perdure.client import Client, InstanceState
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceNotFoundError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (times in ISO 8601 UTC) instead.")


def _outcome_code(state: InstanceState) -> int:
    """The exit code of a finished instance: 0 completed, 1 failed or terminated."""
    return EXIT_OK if state.status is OrchestrationStatus.COMPLETED else EXIT_FAILED


def _require(client: Client, instance_id: str) -> InstanceState:
    state = client.get(instance_id)
    if state is None:
        raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
    return state


def _children(client: Client, instance_id: str) -> list[InstanceState]:
    return client.list(parent_instance_id=instance_id, limit=100).items


@cli.command(
    epilog="""\b
Examples:
  perdure start order_saga '{"id": 7, "items": ["a"]}' --id order-7 --app shop:app
  perdure start order_saga @order.json --wait 30
  echo '{"id": 8}' | perdure start order_saga - --id order-8

With --wait the exit code tells the outcome: 0 completed, 1 failed or terminated, 3 not
finished in time."""
)
@click.argument("orchestration")
@click.argument("input_json", metavar="[INPUT]", required=False)
@click.option("--id", "instance_id", default=None, help="The instance id (default: a random one).")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Wait up to SECONDS for the instance to finish, then show it.",
)
@click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run version N of the orchestration (default: the latest the --app registers; without "
    "--app, the latest of the worker that takes it).",
)
@click.option("--app", "app_ref", envvar="PERDURE_APP", default=None, help=APP_HELP + " Checks the name.")
@json_option
@common_options()
@click.pass_obj
def start(
    state: State,
    orchestration: str,
    input_json: str | None,
    instance_id: str | None,
    wait_seconds: float | None,
    version: int | None,
    app_ref: str | None,
    as_json: bool,
) -> None:
    """Start ORCHESTRATION (its registered name) with INPUT (JSON, @FILE to read it from a
    file, or - to read it from stdin); print the instance id. Creates the store if it does
    not exist."""
    data = payload_arg(input_json, "input")
    if app_ref is not None:
        state.app = load_app(app_ref)
    client = state.client(create=True)
    iid = client.start(orchestration, data, instance_id=instance_id, version=version)
    if app_ref is None:
        click.echo(
            f"note: the name {orchestration!r} was not checked (no --app or PERDURE_APP): if no worker "
            f"registers it, the instance waits for one (perdure diagnose {iid} says so)",
            err=True,
        )
    if wait_seconds is None:
        print_json({"instance_id": iid}) if as_json else click.echo(iid)
        return
    result = client.wait(iid, timeout=wait_seconds)
    _show(client, result, as_json)
    raise SystemExit(_outcome_code(result))


@cli.command(
    epilog="""\b
Examples:
  perdure result order-7
  perdure result order-7 --wait 60 > output.json

Exit codes: 0 completed (the output is printed), 1 failed or terminated (the failure or
reason is printed on stderr), 2 no such instance, 3 not finished (within --wait)."""
)
@click.argument("instance_id")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="Wait up to SECONDS for the instance to finish (default: do not wait).",
)
@json_option
@common_options()
@click.pass_obj
def result(state: State, instance_id: str, wait_seconds: float, as_json: bool) -> None:
    """Print the output of a completed instance as JSON, or its failure."""
    client = state.client()
    current = _require(client, instance_id)
    if not current.is_terminal:
        try:
            current = client.wait(instance_id, timeout=wait_seconds)
        except TimeoutError:
            waited = f" after waiting {wait_seconds:g} s" if wait_seconds else " (--wait SECONDS waits for it)"
            raise CommandFailed(
                f"instance {instance_id!r} is {current.status.value}: no result yet{waited}", EXIT_TIMEOUT
            ) from None
    if as_json:
        data = current.to_dict()
        print_json({k: data[k] for k in ("instance_id", "status", "output", "failure", "termination_reason")})
    elif current.status is OrchestrationStatus.COMPLETED:
        print_json(current.output)
    elif current.status is OrchestrationStatus.FAILED:
        click.echo(f"error: instance {instance_id!r} FAILED: {current.failure}", err=True)
    else:
        reason = current.termination_reason or "no reason given"
        click.echo(f"error: instance {instance_id!r} was TERMINATED: {reason}", err=True)
    raise SystemExit(_outcome_code(current))


@cli.command(
    epilog="""\b
Examples:
  perdure status order-7
  perdure status order-7 --json | jq .waiting_on"""
)
@click.argument("instance_id")
@click.option("--history", "with_history", is_flag=True, help="Show the current execution's history too.")
@json_option
@common_options()
@click.pass_obj
def status(state: State, instance_id: str, with_history: bool, as_json: bool) -> None:
    """Show an instance: status, times, input and output or failure, what it waits for,
    its parent and children."""
    client = state.client()
    current = client.get(instance_id, history=with_history)
    if current is None:
        raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
    _show(client, current, as_json)
    if with_history and not as_json:
        click.echo("")
        show_history(current.history or [], turns=False)


def _show(client: Client, current: InstanceState, as_json: bool) -> None:
    children = _children(client, current.instance_id)
    if as_json:
        print_json({**current.to_dict(), "children": [c.instance_id for c in children]})
    else:
        show_state(current, children)


@cli.command(
    epilog="""\b
Examples:
  perdure history order-7
  perdure history order-7 --all
  perdure history loyalty-42 --execution 1
  perdure history loyalty-42 --all-executions --json"""
)
@click.argument("instance_id")
@click.option("--all", "turns", is_flag=True, help="Show the turn markers (TurnStarted) too.")
@click.option(
    "--execution",
    "execution_id",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Show execution N (1 is the first; each continue-as-new starts the next) instead of the current one.",
)
@click.option("--all-executions", is_flag=True, help="Show every execution of the instance, oldest first.")
@json_option
@common_options()
@click.pass_obj
def history(
    state: State, instance_id: str, turns: bool, execution_id: int | None, all_executions: bool, as_json: bool
) -> None:
    """Show an instance's history, one event per line (the current execution by default)."""
    if execution_id is not None and all_executions:
        raise click.UsageError("give --execution N or --all-executions, not both")
    client = state.client()
    current = _require(client, instance_id)
    last = current.execution_id
    executions = list(range(1, last + 1)) if all_executions else [execution_id or last]
    events = [(n, client.history(instance_id, execution_id=n)) for n in executions]
    if as_json:
        print_json([item for n, found in events for item in history_json(found, n, turns=turns)])
        return
    for n, found in events:
        title = f"execution {n}" if len(events) > 1 or n != current.execution_id else None
        show_history(found, turns=turns, title=title)


@cli.command(
    "raise",
    epilog="""\b
Examples:
  perdure raise order-7 PaymentConfirmed '{"ok": true}'
  perdure raise order-7 PaymentConfirmed @confirmation.json""",
)
@click.argument("instance_id")
@click.argument("event_name")
@click.argument("data_json", metavar="[DATA]", required=False)
@common_options()
@click.pass_obj
def raise_(state: State, instance_id: str, event_name: str, data_json: str | None) -> None:
    """Raise external event EVENT_NAME to an instance, with DATA (JSON, @FILE or - for
    stdin)."""
    state.client().raise_event(instance_id, event_name, payload_arg(data_json, "event data"))
    click.echo(f"raised {event_name} to {instance_id}")


@cli.command(
    "list",
    epilog="""\b
Examples:
  perdure list --status RUNNING --name order_saga
  perdure list --prefix order- --created-after 2h
  perdure list --status FAILED --json | jq -r '.items[].instance_id'""",
)
@filter_options
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Most instances on the page."
)
@click.option("--cursor", default=None, help="Where the previous page ended (its next_cursor).")
@json_option
@common_options()
@click.pass_obj
def list_(
    state: State,
    statuses: tuple[str, ...],
    name: str | None,
    created_after: str | None,
    created_before: str | None,
    prefix: str | None,
    version: int | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List instances, newest first, one page at a time."""
    found = make_filter(statuses, name, created_after, created_before, prefix, version)
    page = state.client().list(
        status=found.status,
        name=found.name,
        version=found.version,
        created_after=found.created_after,
        created_before=found.created_before,
        prefix=found.prefix,
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        print_json({"items": [s.to_dict() for s in page.items], "next_cursor": page.next_cursor})
        return
    if not page.items:
        click.echo(f"no instances match ({found.describe()})", err=True)
        return
    show_list(page.items)
    if page.next_cursor:  # on stderr: stdout stays the rows alone, for pipes
        click.echo(f"more: --cursor {page.next_cursor}", err=True)
