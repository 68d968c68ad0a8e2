"""``create_app``: the ASGI app that serves the API (``/api/v1``) and the dashboard."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from perdure.client import DEFAULT_MAX_PAYLOAD_BYTES, AsyncClient
from perdure.store.base import Store
from perdure.web.api import Api, error_response
from perdure.web.auth import SESSION_COOKIE, SESSION_MAX_AGE, BearerAuth, Token
from perdure.web.context import WebContext
from perdure.web.errors import ApiError
from perdure.web.pages import Dashboard
from perdure.web.paths import APP_ROOT, RawPathSegments

_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def create_app(
    store: Store,
    *,
    token: str,
    read_only: bool = False,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    https_only: bool = False,
    metrics: bool = False,
    metrics_public: bool = False,
) -> Starlette:
    """The management API and dashboard over ``store``, as an ASGI app.

    ``token`` (at least 16 characters; :func:`perdure.web.new_token` makes one) is required
    by every route: as ``Authorization: Bearer <token>`` for ``/api/v1``, or entered once
    on the dashboard's login page. ``read_only`` refuses every mutation (403).
    ``max_payload_bytes`` bounds inputs and event data, as in :class:`perdure.Client`.
    ``https_only`` marks the session cookie Secure (set it when served over HTTPS).

    ``metrics`` serves ``/metrics`` for Prometheus (needs ``perdure[metrics]``): the store's
    gauges (queues, instances by status, live workers, dead letters), behind the bearer
    token like the API; ``metrics_public`` serves it without the token (for a scraper on a
    trusted network).

    The app goes through a :class:`perdure.Client` on ``store``; it does not close the
    store. Mount it anywhere in another ASGI app (``Mount("/perdure", app=create_app(...))``).
    """
    ctx = WebContext(
        client=AsyncClient(store, max_payload_bytes=max_payload_bytes),
        token=Token(token),
        read_only=bool(read_only),
        body_limit=2 * max_payload_bytes + 64 * 1024,
    )
    api = Api(ctx)
    dashboard = Dashboard(ctx)
    routes = [
        *_metrics_routes(ctx, metrics, metrics_public),
        Mount("/api/v1", routes=api.routes(), middleware=[Middleware(BearerAuth, token=ctx.token)]),
        Mount("/static", app=StaticFiles(packages=[("perdure.web", "static")]), name="static"),
        *dashboard.routes(),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        error = ApiError(exc.status_code, code, _http_message(exc, request))
        if _is_api(request):
            return error_response(error)
        return dashboard.error_page(request, error)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette re-raises the exception after this answer, so the server logs it.
        error = ApiError(500, "internal", f"unexpected {type(exc).__name__}; the server log has the details")
        return error_response(error) if _is_api(request) else dashboard.error_page(request, error)

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RawPathSegments),
            Middleware(_SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=ctx.token.session_secret,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_MAX_AGE,
                same_site="strict",
                https_only=https_only,
            ),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def _metrics_routes(ctx: WebContext, metrics: bool, public: bool) -> list[BaseRoute]:
    """``/metrics`` when asked for: behind the bearer token unless ``public``."""
    if public and not metrics:
        raise ValueError("metrics_public=True needs metrics=True")
    if not metrics:
        return []
    from perdure.web.metrics import metrics_route

    return [metrics_route(ctx.client.sync, None if public else ctx.token)]


def _is_api(request: Request) -> bool:
    root = request.scope.get(APP_ROOT)
    path = request.scope["path"]
    if root is None:  # outside the middleware (an unexpected error): judge by the path
        return "/api/v1/" in path + "/"
    return path[len(root) :].startswith("/api/")


def _http_message(exc: HTTPException, request: Request) -> str:
    if exc.status_code == 404:
        return f"no such path: {request.url.path}"
    if exc.status_code == 405:
        return f"{request.method} is not allowed on {request.url.path}"
    return str(exc.detail)


class _SecurityHeaders:
    """ASGI middleware: the headers that keep pages out of frames and scripts to our own."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in _SECURITY_HEADERS.items() if k.encode() not in present]
                message = dict(message, headers=headers)
            await send(message)  # type: ignore[operator]

        await self.app(scope, receive, send_with_headers)  # type: ignore[operator]
