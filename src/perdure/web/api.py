"""The JSON API, ``/api/v1``: instances, their histories and diagnoses, operations on them,
and the fleet (counts, workers, queues, dead letters, the fleet report).

Every route runs behind :class:`~perdure.web.auth.BearerAuth`; errors are
``{"error": {"code", "message"}}``. Lists are paged (``limit`` at most 1000, an opaque
``cursor``), never unbounded. The reference is ``docs/web.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.errors import PerdureError
from perdure.web import shapes
from perdure.web.body import json_object, optional_string, read_json
from perdure.web.context import WebContext
from perdure.web.errors import ApiError, from_exception
from perdure.web.operations import OPERATIONS, Operation
from perdure.web.params import MAX_PAGE, ListFilters, integer, number, reject_unknown

Endpoint = Callable[[Request], Awaitable[Response]]


def json_errors(fn: Endpoint) -> Endpoint:
    """Turn :class:`ApiError` and perdure's exceptions into JSON error answers."""

    @wraps(fn)
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except PerdureError as exc:
            return error_response(from_exception(exc))
        except ApiError as exc:
            return error_response(exc)

    return endpoint


def error_response(error: ApiError) -> JSONResponse:
    """The JSON answer for ``error``."""
    return JSONResponse(error.to_dict(), error.status)


def _iid(request: Request) -> str:
    return request.path_params["instance_id"]


class Api:
    """The API's endpoints over one :class:`WebContext`; :meth:`routes` lists them."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.client = ctx.client

    def routes(self) -> list[BaseRoute]:
        """The routes, relative to the API's mount point."""
        iid = "/instances/{instance_id:iid}"
        routes = [
            Route("/instances", json_errors(self.list_instances), methods=["GET"], name="api_instances"),
            Route("/instances", json_errors(self.start), methods=["POST"], name="api_start"),
            Route(iid, json_errors(self.get_instance), methods=["GET"], name="api_instance"),
            Route(iid, json_errors(self.purge), methods=["DELETE"], name="api_purge"),
            Route(iid + "/history", json_errors(self.history), methods=["GET"], name="api_history"),
            Route(iid + "/diagnosis", json_errors(self.diagnosis), methods=["GET"], name="api_diagnosis"),
            Route(iid + "/events/{event_name:iid}", json_errors(self.raise_event), methods=["POST"], name="api_raise"),
            Route(iid + "/reset", json_errors(self.reset), methods=["POST"], name="api_reset"),
            Route("/counts", json_errors(self.counts), methods=["GET"], name="api_counts"),
            Route("/diagnosis", json_errors(self.fleet), methods=["GET"], name="api_fleet"),
            Route("/workers", json_errors(self.workers), methods=["GET"], name="api_workers"),
            Route("/queues", json_errors(self.queues), methods=["GET"], name="api_queues"),
            Route("/dead-letters", json_errors(self.dead_letters), methods=["GET"], name="api_dead_letters"),
        ]
        for op in OPERATIONS.values():
            routes.append(Route(f"{iid}/{op.name}", json_errors(self.operation(op)), methods=["POST"]))
        return routes

    # -- instances --

    async def list_instances(self, request: Request) -> Response:
        filters = ListFilters.parse(request.query_params, strict=True)
        page = await self.client.list(**filters.client_kwargs())
        return JSONResponse(shapes.page([s.to_dict() for s in page.items], page.next_cursor))

    async def start(self, request: Request) -> Response:
        self.ctx.check_writable()
        reject_unknown(request.query_params.keys(), ())
        body = json_object(
            await read_json(request, self.ctx.body_limit),
            {"name": True, "input": False, "instance_id": False, "version": False},
            "the start request",
        )
        name = body["name"]
        if not isinstance(name, str):
            raise ApiError(
                400, "invalid_body", f"the start request: 'name' must be a string, got {type(name).__name__}"
            )
        instance_id = optional_string(body, "instance_id", "the start request")
        version = body.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ApiError(
                400, "invalid_body", f"the start request: 'version' must be an integer >= 1, got {version!r}"
            )
        iid = await self.client.start(name, body.get("input"), instance_id=instance_id, version=version)
        return JSONResponse({"instance_id": iid}, 201)

    async def get_instance(self, request: Request) -> Response:
        reject_unknown(request.query_params.keys(), ())
        state = await self.client.get(_iid(request))
        if state is None:
            raise ApiError(404, "not_found", f"no instance with id {_iid(request)!r}")
        return JSONResponse(state.to_dict())

    async def purge(self, request: Request) -> Response:
        self.ctx.check_writable()
        await self.client.purge(_iid(request))
        return Response(status_code=204)

    async def history(self, request: Request) -> Response:
        q = request.query_params
        reject_unknown(q.keys(), ("execution", "limit", "cursor"))
        execution = integer(q, "execution", 0, 1, 2**31 - 1) or None
        limit = integer(q, "limit", 500, 1, MAX_PAGE)
        start = integer(q, "cursor", 0, 0, 2**31 - 1)
        events = await self.client.history(_iid(request), execution_id=execution)
        chunk = events[start : start + limit]
        more = start + limit < len(events)
        items = [shapes.history_event(start + i, e) for i, e in enumerate(chunk)]
        body = shapes.page(items, str(start + limit) if more else None)
        return JSONResponse({"instance_id": _iid(request), **body})

    async def diagnosis(self, request: Request) -> Response:
        reject_unknown(request.query_params.keys(), ())
        return JSONResponse((await self.client.diagnose(_iid(request))).to_dict())

    # -- messages and operations --

    async def raise_event(self, request: Request) -> Response:
        self.ctx.check_writable()
        reject_unknown(request.query_params.keys(), ())
        data = await read_json(request, self.ctx.body_limit, empty=None)
        await self.client.raise_event(_iid(request), request.path_params["event_name"], data)
        return JSONResponse({"instance_id": _iid(request), "accepted": True}, 202)

    async def reset(self, request: Request) -> Response:
        self.ctx.check_writable()
        reject_unknown(request.query_params.keys(), ())
        body = json_object(
            await read_json(request, self.ctx.body_limit), {"to_turn": True, "reason": False}, "the reset request"
        )
        to_turn = body["to_turn"]
        if isinstance(to_turn, bool) or not isinstance(to_turn, int) or to_turn < 1:
            raise ApiError(
                400, "invalid_body", f"the reset request: 'to_turn' must be an integer >= 1, got {to_turn!r}"
            )
        reason = optional_string(body, "reason", "the reset request")
        run_id = await self.client.reset(_iid(request), to_turn, reason=reason)
        return JSONResponse({"instance_id": _iid(request), "run_id": run_id}, 202)

    def operation(self, op: Operation) -> Endpoint:
        """The endpoint of ``POST /instances/{id}/<op>`` with an optional ``{"reason"}``."""

        async def endpoint(request: Request) -> Response:
            self.ctx.check_writable()
            reject_unknown(request.query_params.keys(), ())
            body = json_object(
                await read_json(request, self.ctx.body_limit, empty={}), {"reason": False}, f"the {op.name} request"
            )
            reason = optional_string(body, "reason", f"the {op.name} request")
            await asyncio.to_thread(op.run, self.client.sync, _iid(request), reason)
            return JSONResponse({"instance_id": _iid(request), "accepted": True}, 202)

        endpoint.__name__ = f"api_{op.name}"
        return endpoint

    # -- the fleet --

    async def counts(self, request: Request) -> Response:
        reject_unknown(request.query_params.keys(), ())
        return JSONResponse(shapes.counts(await self.client.instance_counts()))

    async def fleet(self, request: Request) -> Response:
        q = request.query_params
        reject_unknown(q.keys(), ("stalled_after", "limit"))
        overrides: dict[str, Any] = {}
        stalled_after = number(q, "stalled_after", None)
        if stalled_after is not None:
            overrides["stalled_after"] = stalled_after
        report = await self.client.diagnose_all(limit=integer(q, "limit", 50, 0, MAX_PAGE), **overrides)
        return JSONResponse(report.to_dict())

    async def workers(self, request: Request) -> Response:
        q = request.query_params
        reject_unknown(q.keys(), ("seen_within", "limit", "cursor"))
        seen_within = number(q, "seen_within", 3600.0)
        limit = integer(q, "limit", 100, 1, MAX_PAGE)
        start = integer(q, "cursor", 0, 0, 2**31 - 1)
        rows = sorted(await self.client.workers(alive_within=seen_within), key=lambda w: (-w.heartbeat_at, w.worker_id))
        now = time.time()
        more = start + limit < len(rows)
        items = [shapes.worker(w, now) for w in rows[start : start + limit]]
        return JSONResponse(shapes.page(items, str(start + limit) if more else None))

    async def queues(self, request: Request) -> Response:
        reject_unknown(request.query_params.keys(), ())
        return JSONResponse({"items": [shapes.queue_depth(d) for d in await self.client.queue_depths()]})

    async def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        reject_unknown(q.keys(), ("instance_id", "limit"))
        letters = await self.client.dead_letters(
            instance_id=q.get("instance_id") or None, limit=integer(q, "limit", 100, 1, MAX_PAGE)
        )
        return JSONResponse({"items": [shapes.dead_letter(d) for d in letters]})
