"""The ``perdure`` command group."""

from __future__ import annotations

import click

from perdure.cli.base import CONTEXT, Group, State, common_options


@click.group(
    cls=Group,
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  perdure demo
  perdure worker --app shop:app --store sqlite:///shop.db
  perdure start order_saga '{"id": 7}' --id order-7 --store sqlite:///shop.db
  perdure status order-7 --store sqlite:///shop.db

Every command also takes --store (or PERDURE_STORE). Exit codes: 0 success (the instance
completed), 1 the instance failed or was terminated, or the command failed, 2 usage error
or no such instance, 3 timed out.""",
)
@common_options(group=True)
@click.version_option(package_name="perdure")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """perdure: durable orchestrations for Python.

    Run workers for your App, start instances, and inspect, signal and control them in
    the store shared by your workers (SQLite or PostgreSQL)."""
    state = ctx.ensure_object(State)
    ctx.call_on_close(state.close)


def main() -> None:
    """Console entry point."""
    cli(prog_name="perdure")
