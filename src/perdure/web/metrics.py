"""``/metrics``: the store's gauges for Prometheus (:class:`perdure.observability.StoreGauges`)."""

from __future__ import annotations

import asyncio

from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from perdure.client import Client
from perdure.observability._require import require
from perdure.web.auth import BearerAuth, Token


def metrics_route(client: Client, token: Token | None) -> Route:
    """The ``/metrics`` route: the store's gauges, read through ``client`` on a registry of
    their own (in a thread: the reads are store queries); behind the bearer ``token``
    unless it is ``None``."""
    prometheus = require("prometheus_client", "metrics")
    from perdure.observability import StoreGauges

    registry = prometheus.CollectorRegistry()
    StoreGauges(client).register(registry)

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        body = await asyncio.to_thread(prometheus.generate_latest, registry)
        await Response(body, media_type=prometheus.CONTENT_TYPE_LATEST)(scope, receive, send)

    app: ASGIApp = metrics if token is None else BearerAuth(metrics, token=token)
    # A Route takes a plain function for a request handler: an ASGI app goes in an object.
    return Route("/metrics", _Asgi(app), methods=["GET"])


class _Asgi:
    """An ASGI app as an object (what Starlette's ``Route`` serves as an ASGI app)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
