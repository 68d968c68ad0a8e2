"""Commands that run things: ``worker``, ``init`` (create a store) and ``demo``."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections import Counter
from typing import Any

import click

from perdure.cli.apps import APP_HELP, load_app
from perdure.cli.base import EXIT_INTERRUPTED, State, common_options
from perdure.cli.main import cli
from perdure.logs import configure_logging
from perdure.runtime.options import WorkerOptions

log = logging.getLogger("perdure.cli")

_DEFAULTS = WorkerOptions()  # the defaults the worker command shows


class _Signals:
    """Counts SIGINT / SIGTERM: the first asks for a graceful stop, the second exits at once."""

    def __init__(self, on_second: Any) -> None:
        self.first = threading.Event()
        self._on_second = on_second
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._received)

    def _received(self, signum: int, _frame: Any) -> None:
        if self.first.is_set():
            self._on_second(signal.Signals(signum).name)
        self.first.set()


@cli.command(
    epilog="""\b
Examples:
  perdure worker --app shop:app --store sqlite:///shop.db
  PERDURE_STORE=postgresql://app@db/orders perdure worker --app shop:app --log-format json

Ctrl-C (or SIGTERM) stops it gracefully: it finishes the turns in hand and lets running
activities finish for up to --shutdown-timeout seconds. A second Ctrl-C stops it at once
(exit code 130); that is safe, because the work it held is under leases that expire, and
then another worker runs it again."""
)
@click.option("--app", "app_ref", envvar="PERDURE_APP", required=True, help=APP_HELP)
@click.option(
    "--activity-concurrency",
    type=click.IntRange(min=1),
    default=_DEFAULTS.activity_concurrency,
    show_default=True,
    help="Activities running at once.",
)
@click.option(
    "--orchestration-concurrency",
    type=click.IntRange(min=1),
    default=_DEFAULTS.orchestration_concurrency,
    show_default=True,
    help="Dispatch loops running orchestration turns.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=click.FloatRange(min=0.1),
    default=_DEFAULTS.lease_seconds,
    show_default=True,
    help="Seconds work stays this worker's without renewal; after a crash, others take it over then.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=_DEFAULTS.poll_interval,
    show_default=True,
    help="Longest idle sleep (seconds) before looking for work from other processes.",
)
@click.option(
    "--local-activity-budget",
    type=click.FloatRange(min=0),
    default=_DEFAULTS.local_activity_budget,
    show_default=True,
    help="Seconds a round may spend running local activities before it commits.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=_DEFAULTS.shutdown_timeout,
    show_default=True,
    help="Seconds a graceful stop lets running activities finish before releasing their leases.",
)
@click.option(
    "--max-payload-bytes",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_payload_bytes,
    show_default=True,
    help="Largest JSON an activity may return or an orchestration may end with.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://<metrics-host>:PORT/metrics (needs perdure[metrics]).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Interface the metrics endpoint listens on.",
)
@common_options()
@click.pass_obj
def worker(
    state: State,
    app_ref: str,
    activity_concurrency: int,
    orchestration_concurrency: int,
    lease_seconds: float,
    poll_interval: float,
    local_activity_budget: float,
    shutdown_timeout: float,
    max_payload_bytes: int,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a worker for your App until Ctrl-C or SIGTERM. Creates the store if it does not
    exist."""
    from perdure.runtime.worker import Worker

    app = load_app(app_ref)
    store = state.open(create=True)
    observers = [] if metrics_port is None else [_serve_metrics(store, metrics_host, metrics_port)]
    w = Worker(
        app,
        store,
        observers=observers,
        activity_concurrency=activity_concurrency,
        orchestration_concurrency=orchestration_concurrency,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
        local_activity_budget=local_activity_budget,
        shutdown_timeout=shutdown_timeout,
        max_payload_bytes=max_payload_bytes,
    )

    def stop_now(signame: str) -> None:
        running = w.activities.running_names()
        log.warning(
            "%s again: stopping at once%s. That is safe: the work this worker held is leased, the "
            "leases expire within %g s, and then another worker runs it again",
            signame,
            f", abandoning {_activities(running)}" if running else "",
            lease_seconds,
        )
        logging.shutdown()
        os._exit(EXIT_INTERRUPTED)

    signals = _Signals(stop_now)
    w.start()
    log.info(
        "worker %s serves %s: orchestrations %s; activities %s. Ctrl-C stops it",
        w.worker_id,
        state.public_url,
        ", ".join(sorted(app.orchestrations)) or "none",
        ", ".join(sorted(app.activities)) or "none",
    )
    while not signals.first.wait(0.5):
        pass
    running = w.activities.running_names()
    waiting = (
        f"waiting up to {shutdown_timeout:g} s for {_activities(running)} to finish"
        if running
        else "no activities running"
    )
    log.info("stopping: finishing the turns in hand, %s; Ctrl-C again stops at once", waiting)
    stopper = threading.Thread(target=w.stop, name="perdure-stop", daemon=True)
    stopper.start()
    while stopper.is_alive():
        stopper.join(0.2)
    counts = ", ".join(f"{name} {count}" for name, count in sorted(w.stats().items()) if count)
    log.info("worker %s counted: %s", w.worker_id, counts or "nothing done")


def _serve_metrics(store: object, host: str, port: int) -> object:
    """Start the Prometheus endpoint of ``--metrics-port``: the worker's metrics and the
    store's gauges, on a registry of their own. Returns the worker observer."""
    from perdure.observability._require import MissingExtraError

    try:
        import prometheus_client

        from perdure.client import Client
        from perdure.observability import PrometheusMetrics, StoreGauges
    except (ImportError, MissingExtraError):
        raise click.ClickException('--metrics-port needs prometheus_client: pip install "perdure[metrics]"') from None
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    StoreGauges(Client(store)).register(registry)  # type: ignore[arg-type]
    try:
        server, _ = prometheus_client.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    log.info("metrics at http://%s:%d/metrics", host, server.server_port)
    return metrics


def _activities(names: list[str]) -> str:
    """``2 running activities (charge, pack×2)``."""
    counts = Counter(names)
    listed = ", ".join(name if n == 1 else f"{name}×{n}" for name, n in sorted(counts.items()))
    return f"{len(names)} running {'activity' if len(names) == 1 else 'activities'} ({listed})"


@cli.command(
    epilog="""\b
Examples:
  perdure init --store sqlite:///shop.db
  perdure init --store postgresql://app@db.internal/orders"""
)
@common_options()
@click.pass_obj
def init(state: State) -> None:
    """Create the store (or bring an older one's schema up to date). Commands that only
    read or change instances never create one; worker and start create it too."""
    state.open(create=True)
    click.echo(f"perdure store ready at {state.public_url}")


@cli.command(
    epilog="""\b
Examples:
  perdure demo
  perdure demo --log-level INFO"""
)
@click.option(
    "--store",
    "demo_store",
    default=None,
    metavar="URL",
    help="Store for the demo (default: a temporary SQLite file, deleted afterwards).",
)
@common_options(store=False)
@click.pass_obj
def demo(state: State, demo_store: str | None) -> None:
    """Run an order workflow that shows the engine's features, live."""
    from perdure.demo import run_demo

    if state.log_level is None:  # the narration says what happens: errors only
        configure_logging("ERROR", state.log_format)
    sys.exit(run_demo(demo_store, echo=click.echo))


@cli.command(
    epilog="""\b
Examples:
  perdure diagnose order-7
  perdure diagnose --stalled-after 60
  perdure diagnose order-7 --json"""
)
@click.argument("instance_id", required=False)
@click.option(
    "--stalled-after",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Fleet report: seconds without progress before a live instance is examined (default 300).",
)
@click.option(
    "--limit",
    type=click.IntRange(0, 10_000),
    default=50,
    show_default=True,
    help="Fleet report: most instances diagnosed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (times in ISO 8601 UTC) instead.")
@common_options()
@click.pass_obj
def diagnose(state: State, instance_id: str | None, stalled_after: float | None, limit: int, as_json: bool) -> None:
    """Explain why an instance is not finishing; without INSTANCE_ID, report on the fleet."""
    from perdure.cli.render import print_json
    from perdure.diagnosis import render_diagnosis, render_fleet

    client = state.client()
    if instance_id is not None:
        diagnosis = client.diagnose(instance_id)
        print_json(diagnosis.to_dict()) if as_json else click.echo(render_diagnosis(diagnosis))
        return
    overrides = {} if stalled_after is None else {"stalled_after": stalled_after}
    report = client.diagnose_all(limit=limit, **overrides)
    print_json(report.to_dict()) if as_json else click.echo(render_fleet(report))
