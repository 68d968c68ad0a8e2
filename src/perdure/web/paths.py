"""Instance ids in URLs: any id is one path segment, percent-encoded.

Ids may hold ``/``, ``%`` or spaces (``orders/7``); ASGI servers decode the path before
routing, so ``orders%2F7`` would look like two segments. :class:`RawPathSegments` rebuilds the
path from the raw one with ``/`` and ``%`` inside a segment still encoded, and the ``iid``
convertor decodes a segment back to the id (and encodes one when building a URL).
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send


class SegmentConvertor(Convertor[str]):
    """One path segment, decoded: ``orders%2F7`` is the id ``orders/7``."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        if not value:
            raise ValueError("an empty id has no URL")
        return quote(value, safe="")


register_url_convertor("iid", SegmentConvertor())

#: The scope key holding the app's own root path (its mount point), for building links.
APP_ROOT = "perdure.root_path"


def _segment(raw: str) -> str:
    return unquote(raw).replace("%", "%25").replace("/", "%2F")


class RawPathSegments:
    """ASGI middleware: ``scope["path"]`` rebuilt from ``raw_path`` with each segment decoded
    except for ``%`` and ``/`` (which the ``iid`` convertor decodes); the app's root path
    kept under :data:`APP_ROOT`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope[APP_ROOT] = scope.get("root_path", "")
            raw = scope.get("raw_path")
            if raw:
                path = "/".join(_segment(part) for part in raw.decode("utf-8", "replace").split("/"))
                if path.startswith(scope[APP_ROOT]):
                    scope["path"] = path
        await self.app(scope, receive, send)
