"""perdure's HTTP management API and web dashboard (install ``perdure[web]``).

:func:`create_app` returns the ASGI app (Starlette) that serves the JSON API under
``/api/v1`` and the dashboard; run it with ``perdure web`` or mount it into your own ASGI
app. Importing this package does not import Starlette: only :func:`create_app` does, so
``perdure web`` can tell you to install the extra instead of failing on an import.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["create_app", "new_token"]


def create_app(store: Any, **options: Any) -> Starlette:
    """The API and dashboard over ``store``; see :func:`perdure.web.app.create_app` for the
    options (``token`` is required, ``read_only``, ``max_payload_bytes``, ``https_only``)."""
    from perdure.web.app import create_app as build

    return build(store, **options)


def new_token() -> str:
    """A fresh random access token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)
