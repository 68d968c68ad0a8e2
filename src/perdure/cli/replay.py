"""The replay gate on the command line: ``replay-check`` (replay stored or exported
histories against your code, before a deploy) and ``export`` (an instance's histories as
JSON, for a check without access to the store)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import click

from perdure.cli.apps import APP_HELP, load_app
from perdure.cli.base import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, CommandFailed, State, common_options
from perdure.cli.inputs import filter_given, filter_options, make_filter
from perdure.cli.instances import json_option
from perdure.cli.main import cli
from perdure.cli.render import print_json
from perdure.replay import ExecutionHistory, ExportedHistory, export_history, replay_histories, stored_histories


@cli.command(
    "replay-check",
    epilog="""\b
Examples:
  perdure replay-check --app shop:app --store postgresql://app@db.internal/orders
  perdure replay-check --app shop:app --name order_saga --include-terminal 20
  perdure replay-check --app shop:app order-7.json order-8.json
  perdure replay-check --app shop:app --json | jq '.results[] | select(.ok | not)'

Exit codes: 0 every history replays, 1 one or more would not (or the check failed),
2 usage error or a FILE that does not exist.""",
)
@click.argument("files", nargs=-1, metavar="[FILE]...", type=click.Path(dir_okay=False))
@click.option("--app", "app_ref", envvar="PERDURE_APP", required=True, help=APP_HELP + " The code to check.")
@filter_options
@click.option(
    "--include-terminal",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Also check the N most recently updated COMPLETED, FAILED or TERMINATED instances of each orchestration.",
)
@json_option
@common_options()
@click.pass_obj
def replay_check(
    state: State,
    files: tuple[str, ...],
    app_ref: str,
    statuses: tuple[str, ...],
    name: str | None,
    created_after: str | None,
    created_before: str | None,
    prefix: str | None,
    version: int | None,
    include_terminal: int,
    as_json: bool,
) -> None:
    """Replay the current execution of every running instance (PENDING, RUNNING or
    SUSPENDED; --status picks others) against the code of --app, and report each one the
    code would not reproduce: where, what the history recorded and what the code does now.
    With FILEs (written by perdure export), check those instead of the store. Only the
    orchestration code runs: no activity is called, and nothing is written."""
    filters = (statuses, name, created_after, created_before, prefix, version)
    if files and (filter_given(*filters) or include_terminal):
        raise click.UsageError(
            "FILEs are checked instead of the store: the filters and --include-terminal go without them"
        )
    missing = [path for path in files if not Path(path).is_file()]
    if missing:
        raise CommandFailed(f"no such file: {missing[0]!r}", EXIT_NOT_FOUND)
    app = load_app(app_ref)
    found = make_filter(*filters)
    if files:
        histories: Iterable[ExecutionHistory] = [h for path in files for h in ExportedHistory.load(path).executions]
    else:  # read one at a time as they are replayed: a large fleet is never all in memory
        histories = stored_histories(state.client(), found, include_terminal=include_terminal)
    report = replay_histories(app, histories)
    if as_json:
        print_json(report.to_dict())
    elif report.results:
        click.echo(report.text())
    else:
        click.echo(f"no instances to check ({found.describe()})", err=True)
    raise SystemExit(EXIT_OK if report.ok else EXIT_FAILED)


@cli.command(
    epilog="""\b
Examples:
  perdure export order-7 > order-7.json
  perdure export loyalty-42 --all-executions > loyalty-42.json
  perdure replay-check --app shop:app order-7.json"""
)
@click.argument("instance_id")
@click.option(
    "--all-executions", is_flag=True, help="Every execution still stored, oldest first (default: the current one)."
)
@common_options()
@click.pass_obj
def export(state: State, instance_id: str, all_executions: bool) -> None:
    """Print an instance's history as JSON (the perdure-history format, version 1: see the
    docs, "Upgrading code"), for perdure replay-check FILE or perdure.testing.replay."""
    exported = export_history(state.client(), instance_id, all_executions=all_executions)
    click.echo(json.dumps(exported.to_dict(), indent=2, ensure_ascii=False))
