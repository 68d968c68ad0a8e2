"""Commands that change instances: terminate, suspend, resume and purge, for one instance
or (``--query``) every instance matching the filters of ``list``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from perdure.cli.base import CommandFailed, State, common_options
from perdure.cli.inputs import filter_given, filter_options, make_filter
from perdure.cli.main import cli
from perdure.client import Client
from perdure.instance_filter import InstanceFilter

Single = Callable[[Client, str, str | None], None]
Bulk = Callable[[Client, InstanceFilter, str | None, bool], int]


def _control_command(
    verb: str, summary: str, acts_on: str, single: Single, bulk: Bulk, *, reason: bool = True
) -> click.Command:
    """The ``perdure VERB`` command: one instance by id, or with ``--query`` every instance
    matching the filters (a dry-run count first, then a confirmation unless ``--yes``)."""

    def command(
        state: State,
        instance_id: str | None,
        query: bool,
        yes: bool,
        dry_run: bool,
        statuses: tuple[str, ...],
        name: str | None,
        created_after: str | None,
        created_before: str | None,
        prefix: str | None,
        version: int | None,
        reason: str | None = None,
    ) -> None:
        filters = (statuses, name, created_after, created_before, prefix, version)
        if query and instance_id is not None:
            raise click.UsageError("give an INSTANCE_ID or --query, not both")
        if not query:
            if instance_id is None:
                raise click.UsageError("give an INSTANCE_ID, or --query with the filters of the instances")
            if filter_given(*filters) or yes or dry_run:
                raise click.UsageError("the filters, --yes and --dry-run go with --query")
            single(state.client(), instance_id, reason)
            click.echo(f"{_DONE.get(verb, f'{verb} requested for')} {instance_id}")
            return
        found = make_filter(*filters)
        client = state.client()
        count = bulk(client, found, reason, True)
        click.echo(f"{count} {_instances(count)} {acts_on} match ({found.describe()})")
        if count == 0 or dry_run:
            return
        if not yes and not _confirmed(f"{verb} {count} {_instances(count)}?"):
            raise CommandFailed("not confirmed, nothing was changed (--yes skips the question)")
        done = bulk(client, found, reason, False)
        past = _DONE.get(verb, f"{verb} requested for")
        click.echo(f"{past} {done} {_instances(done)}")

    # Applied innermost first; the help lists them the other way round.
    decorated: Any = click.pass_obj(command)
    decorated = common_options()(decorated)
    decorated = click.option("--yes", "-y", is_flag=True, help="With --query: do not ask for confirmation.")(decorated)
    decorated = click.option("--dry-run", is_flag=True, help="With --query: only count the matching instances.")(
        decorated
    )
    if reason:
        decorated = click.option("--reason", default=None, help="Why: recorded in the history.")(decorated)
    decorated = filter_options(decorated)
    decorated = click.option(
        "--query", is_flag=True, help=f"{verb.capitalize()} every instance matching the filters below."
    )(decorated)
    decorated = click.argument("instance_id", required=False)(decorated)
    epilog = f"""\b
Examples:
  perdure {verb} order-7{' --reason "duplicate order"' if reason else ""}
  perdure {verb} --query --status {_example_status(verb)} --created-before 7d --dry-run
  perdure {verb} --query --prefix load-test- --yes"""
    return cli.command(verb, help=summary, epilog=epilog)(decorated)


#: What a verb that acts at once (not through a message) says it did.
_DONE = {"purge": "purged", "rewind": "rewound"}


def _confirmed(question: str) -> bool:
    """Ask ``question`` on stderr; no answer (end of input) is a no."""
    try:
        return click.confirm(question, err=True)
    except click.Abort:
        click.echo("", err=True)
        return False


def _example_status(verb: str) -> str:
    return {
        "terminate": "RUNNING",
        "suspend": "RUNNING",
        "resume": "SUSPENDED",
        "purge": "COMPLETED",
        "rewind": "FAILED",
    }[verb]


def _instances(n: int) -> str:
    return "instance" if n == 1 else "instances"


terminate = _control_command(
    "terminate",
    "Terminate an instance and its unfinished children; running activities finish but their results are "
    "discarded. With --query, every live instance matching the filters.",
    "live (PENDING, RUNNING or SUSPENDED)",
    lambda c, iid, why: c.terminate(iid, why),
    lambda c, f, why, dry: c.terminate_where(f, why, dry_run=dry),
)
suspend = _control_command(
    "suspend",
    "Suspend an instance: messages that arrive are kept until it is resumed. With --query, every PENDING or "
    "RUNNING instance matching the filters.",
    "PENDING or RUNNING",
    lambda c, iid, why: c.suspend(iid, why),
    lambda c, f, why, dry: c.suspend_where(f, why, dry_run=dry),
)
resume = _control_command(
    "resume",
    "Resume a suspended instance; the messages kept meanwhile are applied in arrival order. With --query, "
    "every SUSPENDED instance matching the filters.",
    "SUSPENDED",
    lambda c, iid, why: c.resume(iid, why),
    lambda c, f, why, dry: c.resume_where(f, why, dry_run=dry),
)
rewind = _control_command(
    "rewind",
    "Resume a FAILED instance from its point of failure: the failed turn is undone, its failed activity or "
    "child runs again on the code the workers run now, everything before it is kept. With --query, every "
    "FAILED instance matching the filters (after a fix is deployed, say).",
    "FAILED",
    lambda c, iid, why: c.rewind(iid, why),
    lambda c, f, why, dry: c.rewind_where(f, why, dry_run=dry),
)
purge = _control_command(
    "purge",
    "Delete a finished instance with its history. With --query, every COMPLETED, FAILED or TERMINATED "
    "instance matching the filters.",
    "finished (COMPLETED, FAILED or TERMINATED)",
    lambda c, iid, _why: c.purge(iid),
    lambda c, f, _why, dry: c.purge_where(f, dry_run=dry),
    reason=False,
)


@cli.command(
    epilog="""\b
Examples:
  perdure restart order-7                  # a new run of order-7 (it must have ended)
  perdure restart order-7 --new-id order-7-retry
  perdure restart order-7 --version 2"""
)
@click.argument("instance_id")
@click.option("--new-id", "new_instance_id", default=None, help="Start it as this new instance instead.")
@click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run version N of the orchestration (default: the latest, as for start).",
)
@common_options()
@click.pass_obj
def restart(state: State, instance_id: str, new_instance_id: str | None, version: int | None) -> None:
    """Start INSTANCE_ID's orchestration again with the input of its latest execution: as a
    new run of the same id (the old run's history stays readable until purged), or as a new
    instance with --new-id; print the id."""
    click.echo(state.client().restart(instance_id, new_instance_id, version=version))


@cli.command(
    epilog="""\b
Examples:
  perdure history order-7 --all            # the TURN column numbers the turns
  perdure reset order-7 --to-turn 3 --reason "charge used the wrong rate\""""
)
@click.argument("instance_id")
@click.option("--to-turn", type=click.IntRange(min=1), required=True, metavar="N", help="The last turn to keep.")
@click.option("--reason", default=None, help="Why: recorded in the new run's start.")
@common_options()
@click.pass_obj
def reset(state: State, instance_id: str, to_turn: int, reason: str | None) -> None:
    """Start a new run of INSTANCE_ID (it must have ended) whose history is the current
    execution's up to the end of turn N, and which goes on live from there; print the new
    run's token."""
    click.echo(state.client().reset(instance_id, to_turn, reason=reason))
