"""The dashboard: server-rendered pages (Jinja2) with htmx for live regions.

Pages: the login form, Instances (counts by status, filters, paging, sorting), an instance
(state, payloads, what it waits on, diagnosis, timeline, history, children, actions) and
Fleet (workers, queues, dead letters, the fleet report). Every page needs a logged-in
session; every POST needs the session's CSRF token. Actions come from
:data:`perdure.web.operations.OPERATIONS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.client import InstanceState
from perdure.core.history import (
    HistoryEvent,
    SubOrchestrationCompleted,
    SubOrchestrationCreated,
    SubOrchestrationFailed,
    TimerCreated,
)
from perdure.diagnosis.text import duration
from perdure.errors import PerdureError
from perdure.web import auth, humanize, shapes
from perdure.web.context import WebContext
from perdure.web.errors import ApiError, as_api_error, from_exception
from perdure.web.operations import OPERATIONS
from perdure.web.params import STATUSES, ListFilters
from perdure.web.paths import APP_ROOT
from perdure.web.timeline import build_timeline, render_svg

HISTORY_ROWS = 500
LIVE_POLL = "every 2s"
FLEET_POLL = "every 5s"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("perdure.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(humanize.FILTERS)
    env.globals["relative"] = humanize.relative
    return env


class Dashboard:
    """The dashboard's routes over one :class:`WebContext`."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.env = _environment()

    def routes(self) -> list[BaseRoute]:
        """The page routes (relative to the app's root)."""
        iid = "/instances/{instance_id:iid}"
        return [
            Route("/", self.home, methods=["GET"], name="home"),
            Route("/login", self.login_form, methods=["GET"], name="login"),
            Route("/login", self.login, methods=["POST"], name="login_submit"),
            Route("/logout", self.logout, methods=["POST"], name="logout"),
            Route("/instances", self.instances, methods=["GET"], name="instances"),
            Route(iid, self.instance, methods=["GET"], name="instance"),
            Route(iid + "/live", self.instance_live, methods=["GET"], name="instance_live"),
            Route(iid + "/events", self.raise_event, methods=["POST"], name="instance_raise"),
            Route(iid + "/actions/{operation}", self.operation, methods=["POST"], name="instance_action"),
            Route("/fleet", self.fleet, methods=["GET"], name="fleet"),
            Route("/fleet/live", self.fleet_live, methods=["GET"], name="fleet_live"),
        ]

    # -- rendering --

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """``template`` with the common context: links, CSRF token, flash, mode, now."""
        root = request.scope.get(APP_ROOT, "")
        context.update(
            request=request,
            root=root,
            instance_url=lambda iid: root + "/instances/" + quote(iid, safe=""),
            csrf=auth.csrf_token(request),
            csrf_field=auth.CSRF_FIELD,
            read_only=self.ctx.read_only,
            flash=request.session.pop("flash", None),
            now=context.get("now") or time.time(),
            statuses=STATUSES,
        )
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status, headers={"cache-control": "no-store"})

    def error_page(self, request: Request, error: ApiError) -> Response:
        """An HTML page for a refusal (a notice fragment for an htmx request)."""
        if "session" not in request.scope:  # outside the session middleware: plain text
            return Response(f"{error.status} {error.message}", error.status, media_type="text/plain")
        if request.headers.get("hx-request"):
            return HTMLResponse(f'<div class="notice notice-error">{Markup.escape(error.message)}</div>', error.status)
        return self.render(request, "error.html", error.status, error=error, logged_in=auth.logged_in(request))

    def _guard(self, request: Request) -> Response | None:
        """A redirect to the login page (or a 401 for htmx) unless logged in."""
        if auth.logged_in(request):
            return None
        root = request.scope.get(APP_ROOT, "")
        target = root + "/login?next=" + quote(_local_path(request), safe="")
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, 303)

    async def _form(self, request: Request) -> FormData:
        """The posted form, after the CSRF check (403 without the session's token)."""
        form = await request.form(max_fields=50, max_part_size=self.ctx.body_limit)
        value = form.get(auth.CSRF_FIELD)
        auth.check_csrf(request, value if isinstance(value, str) else None)
        return form

    def _after_post(self, request: Request, target: str, flash: tuple[str, str]) -> Response:
        request.session["flash"] = list(flash)
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, 303)

    # -- login --

    async def home(self, request: Request) -> Response:
        return RedirectResponse(request.scope.get(APP_ROOT, "") + "/instances", 303)

    async def login_form(self, request: Request) -> Response:
        if auth.logged_in(request):
            return RedirectResponse(_safe_next(request, request.query_params.get("next")), 303)
        return self.render(request, "login.html", next=request.query_params.get("next", ""), logged_in=False)

    async def login(self, request: Request) -> Response:
        try:
            form = await self._form(request)
        except ApiError as exc:
            return self.render(request, "login.html", exc.status, error=exc.message, next="", logged_in=False)
        supplied = form.get("token")
        next_path = form.get("next") if isinstance(form.get("next"), str) else ""
        if not (isinstance(supplied, str) and self.ctx.token.matches(supplied.strip())):
            return self.render(
                request, "login.html", 401, error="That token is not valid.", next=next_path, logged_in=False
            )
        auth.log_in(request)
        return RedirectResponse(_safe_next(request, str(next_path)), 303)

    async def logout(self, request: Request) -> Response:
        await self._form(request)
        auth.log_out(request)
        return RedirectResponse(request.scope.get(APP_ROOT, "") + "/login", 303)

    # -- instances --

    async def instances(self, request: Request) -> Response:
        if (redirect := self._guard(request)) is not None:
            return redirect
        try:
            filters = ListFilters.parse(request.query_params, strict=False)
            page, counts = await asyncio.gather(
                self.client.list(**filters.client_kwargs()), self.client.instance_counts()
            )
        except (ApiError, PerdureError) as exc:
            error = as_api_error(exc)
            if error.status >= 500:
                return self.error_page(request, error)
            filters = ListFilters()
            page, counts = await asyncio.gather(self.client.list(limit=filters.limit), self.client.instance_counts())
            request.session["flash"] = ["error", error.message]
        summary = shapes.counts(counts)
        return self.render(
            request,
            "instances.html",
            filters=filters,
            page=page,
            counts=summary,
            names=sorted(summary["by_name"]),
            logged_in=True,
            nav="instances",
        )

    async def _instance_context(self, request: Request) -> dict[str, Any]:
        iid = request.path_params["instance_id"]
        execution = request.query_params.get("execution") or ""
        state = await self.client.get(iid)
        if state is None:
            raise ApiError(404, "not_found", f"no instance with id {iid!r}")
        wanted = int(execution) if execution.isdigit() else state.execution_id
        if not 1 <= wanted <= state.execution_id:
            raise ApiError(404, "not_found", f"instance {iid!r} has no execution {execution}")
        history, diagnosis = await asyncio.gather(
            self.client.history(iid, execution_id=wanted), self.client.diagnose(iid)
        )
        now = time.time()
        timeline = build_timeline(state, history, now)
        shown = history[-HISTORY_ROWS:]
        return {
            "state": state,
            "execution": wanted,
            "history": [shapes.history_event(len(history) - len(shown) + i, e) for i, e in enumerate(shown)],
            "history_total": len(history),
            "diagnosis": diagnosis,
            "children": _children(history),
            "timeline": timeline,
            "timeline_svg": Markup(render_svg(timeline)),
            "now": now,
            "live": not state.is_terminal and wanted == state.execution_id,
            "operations": [op for op in OPERATIONS.values() if op.offered(state)],
            "waits": _waits(state, history, now),
            "logged_in": True,
            "nav": "instances",
        }

    async def instance(self, request: Request) -> Response:
        if (redirect := self._guard(request)) is not None:
            return redirect
        try:
            context = await self._instance_context(request)
        except (PerdureError, ApiError) as exc:
            return self.error_page(request, as_api_error(exc))
        return self.render(request, "instance.html", **context)

    async def instance_live(self, request: Request) -> Response:
        """The instance page's live region, polled while the instance runs. When the status
        changed since the page was drawn (other actions apply), the page reloads."""
        if (redirect := self._guard(request)) is not None:
            return redirect
        try:
            context = await self._instance_context(request)
        except (PerdureError, ApiError) as exc:
            return self.error_page(request, as_api_error(exc))
        if request.query_params.get("status") not in (None, context["state"].status.value):
            return Response(status_code=204, headers={"HX-Refresh": "true"})
        return self.render(request, "instance_live.html", **context)

    async def raise_event(self, request: Request) -> Response:
        async def run(form: FormData) -> str:
            name = str(form.get("name") or "").strip()
            data = _form_json(str(form.get("data") or ""))
            await self.client.raise_event(request.path_params["instance_id"], name, data)
            return f"Event {name!r} raised."

        return await self._act(request, run)

    async def operation(self, request: Request) -> Response:
        op = OPERATIONS.get(request.path_params["operation"])
        if op is None:
            return self.error_page(request, ApiError(404, "not_found", "no such action"))

        async def run(form: FormData) -> str:
            reason = str(form.get("reason") or "").strip() or None
            await asyncio.to_thread(op.run, self.client.sync, request.path_params["instance_id"], reason)
            return f"{op.label} requested."

        return await self._act(request, run)

    async def _act(self, request: Request, run: Callable[[FormData], Awaitable[str]]) -> Response:
        """A posted action: session, CSRF and mode checks, then ``run(form)``; back to the
        instance page with its message (or the refusal's) shown once."""
        if (redirect := self._guard(request)) is not None:
            return redirect
        target = _instance_path(request, request.path_params["instance_id"])
        try:
            form = await self._form(request)
            self.ctx.check_writable()
            done = await run(form)
        except (PerdureError, ApiError) as exc:
            error = as_api_error(exc)
            if error.code == "csrf":
                return self.error_page(request, error)
            return self._after_post(request, target, ("error", error.message))
        return self._after_post(request, target, ("ok", done))

    # -- fleet --

    async def _fleet_context(self) -> dict[str, Any]:
        report, workers, queues, letters = await asyncio.gather(
            self.client.diagnose_all(limit=20),
            self.client.workers(alive_within=3600),
            self.client.queue_depths(),
            self.client.dead_letters(limit=50),
        )
        now = time.time()
        return {
            "report": report,
            "workers": [shapes.worker(w, now) for w in sorted(workers, key=lambda w: -w.heartbeat_at)],
            "queues": queues,
            "letters": [shapes.dead_letter(d) for d in letters],
            "dead_letter_total": report.queues.get("dead_letters", len(letters)),
            "now": now,
            "logged_in": True,
            "nav": "fleet",
        }

    async def fleet(self, request: Request) -> Response:
        if (redirect := self._guard(request)) is not None:
            return redirect
        try:
            context = await self._fleet_context()
        except PerdureError as exc:
            return self.error_page(request, from_exception(exc))
        return self.render(request, "fleet.html", **context)

    async def fleet_live(self, request: Request) -> Response:
        if (redirect := self._guard(request)) is not None:
            return redirect
        try:
            context = await self._fleet_context()
        except PerdureError as exc:
            return self.error_page(request, from_exception(exc))
        return self.render(request, "fleet_live.html", **context)


def _waits(state: InstanceState, history: list[HistoryEvent], now: float) -> list[dict[str, Any]]:
    """What a live instance waits on, as rows with readable ages and deadlines (a timer
    that is an awaited event's timeout is shown on the event's row)."""
    if state.is_terminal:
        return []
    w = state.waiting_on
    timer_since = {e.task_id: e.timestamp for e in history if isinstance(e, TimerCreated)}
    deadlines = {e.timeout_at for e in w.events if e.timeout_at is not None}
    rows: list[dict[str, Any]] = []
    for a in w.activities:
        rows.append({"kind": "activity", "what": f"{a.name} (attempt {a.attempt})", "since": a.scheduled_at})
    for t in w.timers:
        if t.purpose == "timeout" and t.fire_at in deadlines:
            continue
        rows.append(
            {"kind": t.purpose, "what": f"timer #{t.task_id}", "since": timer_since.get(t.task_id), "due": t.fire_at}
        )
    for c in w.children:
        rows.append({"kind": "child", "what": c.name, "since": c.scheduled_at, "child_id": c.instance_id})
    for e in w.events:
        rows.append({"kind": "event", "what": e.name, "since": e.since, "due": e.timeout_at})
    for row in rows:
        row.setdefault("due", None)
        row.setdefault("child_id", None)
        row["age"] = None if row["since"] is None else duration(now - row["since"])
    return rows


def _children(history: list[HistoryEvent]) -> list[dict[str, str]]:
    """The sub-orchestrations the execution started (from its history, so no list query),
    each with how it ended so far: ``completed``, ``failed`` or ``running``."""
    outcomes = {
        e.task_id: ("failed" if isinstance(e, SubOrchestrationFailed) else "completed")
        for e in history
        if isinstance(e, (SubOrchestrationCompleted, SubOrchestrationFailed))
    }
    return [
        {"instance_id": e.instance_id, "name": e.name, "outcome": outcomes.get(e.task_id, "running")}
        for e in history
        if isinstance(e, SubOrchestrationCreated)
    ]


def _form_json(text: str) -> Any:
    import json

    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ApiError(400, "invalid_body", f"the event data is not valid JSON: {exc}") from None


def _local_path(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def _safe_next(request: Request, target: str | None) -> str:
    """``target`` if it is a path inside this app, else the instances page (no open
    redirects)."""
    root = request.scope.get(APP_ROOT, "")
    target = target or ""
    parts = urlsplit(target)
    inside = target.startswith(root + "/") and not target.startswith("//") and "\\" not in target
    return target if inside and not parts.scheme and not parts.netloc else root + "/instances"


def _instance_path(request: Request, iid: str) -> str:
    return request.scope.get(APP_ROOT, "") + "/instances/" + quote(iid, safe="")
