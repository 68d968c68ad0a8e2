"""What every route of one app shares: the client, the mode and the limits."""

from __future__ import annotations

from perdure.client import AsyncClient
from perdure.core.records import frozen_record
from perdure.web.auth import Token
from perdure.web.errors import ApiError


@frozen_record
class WebContext:
    """``client`` is the app's :class:`~perdure.AsyncClient`; ``read_only`` refuses every
    mutation; ``body_limit`` caps request bodies (bytes)."""

    client: AsyncClient
    token: Token
    read_only: bool
    body_limit: int

    def check_writable(self) -> None:
        """403 in read-only mode."""
        if self.read_only:
            raise ApiError(403, "read_only", "this perdure web server is read-only: it serves reads only")
