"""Who may use the dashboard, and proof that a state-changing request comes from its own pages.

- Authentication: HTTP basic auth and/or a bearer token, each compared with
  ``hmac.compare_digest`` so the time a refusal takes says nothing about the secret.
- CSRF: a random nonce in an HttpOnly, SameSite=Strict cookie, and in every form (or the
  ``X-CSRF-Token`` header htmx sends) the HMAC of that nonce under the server's secret. A page
  on another site can neither read the cookie nor compute the HMAC, so it cannot forge a POST
  even though the browser would send the basic-auth credentials along.
- Headers: a Content-Security-Policy that allows only our own scripts and styles (no inline
  code), no framing, no referrer leaks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supervisor.dashboard.settings import DashboardSettings

CSRF_COOKIE = "sv_dashboard_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_NONCE = re.compile(r"[A-Za-z0-9_-]{20,100}")

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def authorized(authorization: str | None, settings: DashboardSettings) -> bool:
    """True when no credentials are configured, or the Authorization header carries valid ones."""
    if not settings.has_credentials:
        return True
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and settings.token:
        return hmac.compare_digest(value.encode(), settings.token.encode())
    if scheme == "basic" and settings.basic_auth:
        assert settings.username is not None and settings.password is not None
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both comparisons always run: no early exit that would time the user name.
        ok_user = hmac.compare_digest(user.encode(), settings.username.encode())
        ok_password = hmac.compare_digest(password.encode(), settings.password.encode())
        return bool(sep) and ok_user and ok_password
    return False


class SecurityMiddleware:
    """Refuses unauthenticated requests (401) and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, settings: DashboardSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        if not authorized(raw.decode("latin-1") if raw is not None else None, self.settings):
            challenge = {"WWW-Authenticate": 'Basic realm="supervisor dashboard", charset="UTF-8"'}
            response = PlainTextResponse(
                "authentication required\n", status_code=401, headers=challenge if self.settings.basic_auth else None
            )
            await response(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        return wrapped


class Csrf:
    """Issues and checks CSRF tokens (see the module docstring)."""

    def __init__(self, secret: str) -> None:
        self.key = hashlib.sha256(b"supervisor-dashboard-csrf:" + secret.encode()).digest()

    def token_for(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()

    def nonce(self, request: Request) -> tuple[str, bool]:
        """The request's nonce, and whether it is new (then ``set_cookie`` must send it)."""
        current = request.cookies.get(CSRF_COOKIE, "")
        if _NONCE.fullmatch(current):
            return current, False
        return secrets.token_urlsafe(24), True

    def set_cookie(self, response: Response, nonce: str, path: str) -> None:
        response.set_cookie(CSRF_COOKIE, nonce, path=path or "/", httponly=True, samesite="strict")

    def valid(self, request: Request, submitted: str | None) -> bool:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not submitted or not _NONCE.fullmatch(nonce):
            return False
        return hmac.compare_digest(submitted.encode(), self.token_for(nonce).encode())
