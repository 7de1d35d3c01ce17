"""The request guard: body size caps, and API calls without a credential refused unread.

A pure ASGI middleware in front of every route (``create_app`` installs it):

* a request whose ``Content-Length`` is over its cap is answered ``413`` at once, and a body
  sent without a length (chunked) is counted as it streams in and cut off with ``413`` as
  soon as it passes the cap, so no request ever holds more than its cap in memory;
* a call to an ``/api/`` route that needs a principal is authenticated *before* its body is
  read: a missing, malformed or unknown bearer token (and, without one, a missing, invalid
  or signed-out web UI session cookie) is answered ``401`` exactly as the route would.
  The principal found is kept on the request so that the route does not look it up again.

Caps (:class:`RequestLimits`): API requests up to ``MAILGATE_MAX_REQUEST_BYTES`` (default:
one message of ``max_message_bytes`` in JSON, base64, plus 1 MiB); keystore uploads and web
UI forms up to 1 MiB.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailgate.errors import Unauthenticated
from mailgate.services import auth, ui_sessions
from mailgate.settings import Settings
from mailgate.web.deps import PRINCIPAL_STATE, get_principal
from mailgate.web.problems import problem

MIB = 1024 * 1024
#: Keystore uploads (a PKCS#12 file or PEM certificates, base64 in JSON).
KEYSTORE_MAX_BYTES = MIB
#: Web UI form posts (every form is a few fields).
FORM_MAX_BYTES = MIB


def default_request_bytes(max_message_bytes: int) -> int:
    """The largest JSON send request: one message of ``max_message_bytes`` in base64, + 1 MiB."""
    return 4 * math.ceil(max_message_bytes / 3) + MIB


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How large a request body may be, by kind of request."""

    max_request_bytes: int
    max_keystore_bytes: int = KEYSTORE_MAX_BYTES
    max_form_bytes: int = FORM_MAX_BYTES

    @classmethod
    def for_message_size(cls, max_message_bytes: int) -> RequestLimits:
        return cls(max_request_bytes=default_request_bytes(max_message_bytes))

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        """``MAILGATE_MAX_REQUEST_BYTES``, or the default for ``MAILGATE_MAX_MESSAGE_BYTES``."""
        if settings.max_request_bytes is not None:
            return cls(max_request_bytes=settings.max_request_bytes)
        return cls.for_message_size(settings.max_message_bytes)

    def cap(self, method: str, path: str) -> int:
        """The cap of one request."""
        if path.startswith("/api/"):
            if method == "POST" and path.rstrip("/").endswith("/keystores"):
                return min(self.max_keystore_bytes, self.max_request_bytes)
            return self.max_request_bytes
        return min(self.max_form_bytes, self.max_request_bytes)


#: After a refusal, the rest of the body is read and dropped for at most this long and this
#: much, so that the answer reaches the client before the connection closes (closing with
#: unread data resets the connection, and the client may lose the answer).
LINGER_SECONDS = 2.0
LINGER_BYTES = 32 * MIB


async def _refuse(
    response: JSONResponse, receive: Receive, send: Send, *, linger: bool = True
) -> None:
    """Send ``response`` whole, linger (see :data:`LINGER_SECONDS`), then end it."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body, "more_body": True})
    deadline = time.monotonic() + (LINGER_SECONDS if linger else 0.0)
    dropped = 0
    while dropped < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            break
        if message["type"] != "http.request":
            break
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class _TooLarge(Exception):
    """Raised into the application when a streamed body passes its cap."""


def _too_large(cap: int) -> JSONResponse:
    return problem(
        413,
        "Payload too large",
        f"The request body is larger than {cap} bytes.",
        headers={"Connection": "close"},
    )


def _needs_principal(dependant: Dependant) -> bool:
    return any(d.call is get_principal or _needs_principal(d) for d in dependant.dependencies)


def protected_routes(routers: Iterable[APIRouter]) -> list[APIRoute]:
    """The routes of ``routers`` that need a principal (a bearer token or a UI session)."""
    return [
        route
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and _needs_principal(route.dependant)
    ]


class RequestGuard:
    """The middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, limits: RequestLimits, protected: list[APIRoute]) -> None:
        self.app = app
        self.limits = limits
        self._protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.cap(scope["method"], scope["path"])
        headers = Headers(scope=scope)
        # A client that waits for "100 Continue" sends no body after a refusal: no lingering.
        linger = headers.get("expect", "").lower() != "100-continue"
        declared = headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                bad = problem(
                    400,
                    "Malformed request",
                    "Content-Length is not a number.",
                    headers={"Connection": "close"},
                )
                await _refuse(bad, receive, send, linger=linger)
                return
            if length > cap:
                await _refuse(_too_large(cap), receive, send, linger=linger)
                return
        if scope["path"].startswith("/api/") and self._route_needs_principal(scope):
            refused = await self._authenticate(scope, headers)
            if refused is not None:
                if declared not in (None, "0") or "chunked" in headers.get("transfer-encoding", ""):
                    # A body is on its way: close after answering instead of reading it.
                    refused.headers["Connection"] = "close"
                await _refuse(refused, receive, send, linger=linger)
                return
        await self._counted(scope, receive, send, cap)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the application's answer to a cut-off body; 413 goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _refuse(_too_large(cap), receive, send)

    def _route_needs_principal(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self._protected)

    async def _authenticate(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """None when the request carries a credential worth reading the body for, else the
        ``401`` answer (the same as the route's)."""
        app = scope["app"]
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        if not header:
            ui = getattr(app.state, "mailgate_ui", None)
            if ui is not None:
                from mailgate.web.ui.session import COOKIE

                session = ui.codec.open(Request(scope).cookies.get(COOKIE))
                if (
                    session is not None
                    and session.signed_in
                    and await ui_sessions.session_active(app.state.ctx, session.session_id)
                ):
                    return None  # the route checks the rest itself (CSRF, tenant, user)
        try:
            principal = await auth.authenticate(app.state.ctx, token.strip() or None)
        except Unauthenticated as exc:
            return problem(exc.status, exc.title, exc.detail)
        scope.setdefault("state", {})[PRINCIPAL_STATE] = (header, principal)
        return None
