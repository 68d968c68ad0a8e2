"""``perdure web``: serve the HTTP management API and the dashboard with uvicorn.

This module imports neither Starlette nor uvicorn at import time, so the ``perdure``
command works without the ``web`` extra; ``perdure web`` then says what to install.
"""

from __future__ import annotations

import os

import click

from perdure.cli.base import State, common_options
from perdure.cli.main import cli

DEFAULT_PORT = 8080
LOCALHOST = "127.0.0.1"


@cli.command(
    "web",
    epilog="""\b
Examples:
  perdure web --store sqlite:///shop.db
  perdure web --store postgresql://app@db.internal/orders --host 0.0.0.0 --token "$PERDURE_WEB_TOKEN"
  perdure web --read-only --port 9000""",
)
@click.option("--host", default=None, help=f"Interface to listen on (default {LOCALHOST}).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port to listen on."
)
@click.option(
    "--token",
    default=None,
    help="Access token (at least 16 characters); env PERDURE_WEB_TOKEN. Without one, a token is "
    f"generated, printed once, and the server listens on {LOCALHOST} only.",
)
@click.option("--read-only", is_flag=True, help="Serve reads only: every change is refused (403).")
@click.option(
    "--metrics",
    is_flag=True,
    help="Serve the store's gauges for Prometheus at /metrics, behind the token (needs perdure[metrics]).",
)
@click.option("--metrics-public", is_flag=True, help="With --metrics: serve /metrics without the token.")
@common_options()
@click.pass_obj
def web(
    state: State,
    host: str | None,
    port: int,
    token: str | None,
    read_only: bool,
    metrics: bool,
    metrics_public: bool,
) -> None:
    """Serve the HTTP management API (/api/v1) and the web dashboard."""
    try:
        import uvicorn

        from perdure.web import create_app, new_token
    except ImportError:
        raise click.ClickException('perdure web needs the web extra: pip install "perdure[web]"') from None

    token = token or os.environ.get("PERDURE_WEB_TOKEN") or None
    generated = token is None
    if generated:
        if host not in (None, LOCALHOST, "localhost"):
            raise click.UsageError(
                f"--host {host} needs a token you chose (--token or PERDURE_WEB_TOKEN); "
                f"a generated token serves {LOCALHOST} only"
            )
        token = new_token()
    host = host or LOCALHOST
    # Like ``start`` (it can start instances), it creates the store if it is missing.
    if metrics_public and not metrics:
        raise click.UsageError("--metrics-public needs --metrics")
    if metrics:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise click.ClickException('--metrics needs prometheus_client: pip install "perdure[metrics]"') from None
    app = create_app(
        state.open(create=True), token=token, read_only=read_only, metrics=metrics, metrics_public=metrics_public
    )
    mode = " (read-only)" if read_only else ""
    click.echo(f"perdure web{mode}: {state.public_url} at http://{host}:{port}/ (API: /api/v1)", err=True)
    if generated:
        click.echo(f"access token (shown once): {token}", err=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False)).run()
