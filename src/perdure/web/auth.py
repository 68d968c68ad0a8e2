"""Authentication: a bearer token for the API, a signed session cookie for the dashboard,
and CSRF tokens for its forms.

- The API takes ``Authorization: Bearer <token>``; anything else is a 401 before any route
  runs. Tokens are compared in constant time (digests of equal length).
- The dashboard's login form takes the token once and marks the session (Starlette's
  signed cookie, HttpOnly, SameSite=Strict) as logged in. The signing key is derived from
  the token, so changing the token logs every session out; the cookie never holds the token.
- Every form and every htmx request carries the session's CSRF token (a form field or the
  ``X-CSRF-Token`` header); a POST without the right one is refused (403).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from perdure.errors import InvalidInputError
from perdure.web.errors import ApiError

MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "perdure_session"
SESSION_MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class Token:
    """The configured token, held as a digest; :meth:`matches` compares in constant time."""

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise InvalidInputError(
                f"the web token must be a string of at least {MIN_TOKEN_LENGTH} characters "
                f"(perdure.web.new_token() makes one)"
            )
        self._digest = hashlib.sha256(token.encode("utf-8")).digest()
        self.session_secret = hmac.new(token.encode("utf-8"), b"perdure-web-session", hashlib.sha256).hexdigest()

    def matches(self, candidate: str | None) -> bool:
        """True if ``candidate`` is the token."""
        digest = hashlib.sha256((candidate or "").encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(digest, self._digest)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


class BearerAuth:
    """ASGI middleware: a 401 JSON answer for a request without the right bearer token."""

    def __init__(self, app: ASGIApp, token: Token) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            supplied = bearer(headers.get(b"authorization", b"").decode("latin-1"))
            if not self.token.matches(supplied):
                from starlette.responses import JSONResponse

                message = "missing bearer token" if supplied is None else "invalid bearer token"
                error = ApiError(401, "unauthorized", f"{message}: send 'Authorization: Bearer <token>'")
                response = JSONResponse(error.to_dict(), 401, headers={"WWW-Authenticate": 'Bearer realm="perdure"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- dashboard sessions --


def logged_in(request: Request) -> bool:
    """True if the session went through the login form."""
    return request.session.get("auth") is True


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 20:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def log_in(request: Request) -> None:
    """Mark the session as logged in, with a fresh CSRF token (a token known before the
    login is not valid after it)."""
    request.session.clear()
    request.session["auth"] = True
    request.session["csrf"] = secrets.token_urlsafe(24)


def log_out(request: Request) -> None:
    """Forget the session."""
    request.session.clear()


def check_csrf(request: Request, submitted: str | None) -> None:
    """403 unless ``submitted`` (a form field, else the header) is the session's CSRF token."""
    expected = request.session.get("csrf")
    supplied = submitted or request.headers.get(CSRF_HEADER)
    if not (isinstance(expected, str) and supplied and hmac.compare_digest(supplied.encode(), expected.encode())):
        raise ApiError(403, "csrf", "the form is stale or did not come from this dashboard: reload the page and retry")
