"""The web UI session: a sealed cookie, its CSRF token, and the options that shape both.

The cookie is sealed with the instance secret box (AES-256-GCM, the same keys as secrets at
rest), so it is both signed and unreadable; key rotation keeps sessions working because every
configured key opens. It is ``HttpOnly`` and ``SameSite=Lax``; ``Secure`` follows
:attr:`UiOptions.secure_cookies`. A session made before sign-in holds only a CSRF token (the
sign-in form needs one too); signing in issues a fresh session with a fresh token, so a token
seen before sign-in is worth nothing after it.

What a session holds: the memberships of a signed-in user (tenant and user ids, never a
role: roles are read again on every request) or, for the instance administrator, the
administrator token it signed in with, checked again on every request like a bearer token.
A signed-in session also holds a random session id whose server-side record
(:mod:`mailgate.services.ui_sessions`) every request checks: signing out deletes it, so the
cookie, even copied, opens nothing afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import Request, Response

from mailgate.domain.roles import Principal, Role
from mailgate.errors import MailgateError, Unauthenticated
from mailgate.services import auth, ui_sessions
from mailgate.services.context import Context
from mailgate.services.ui_sessions import Membership
from mailgate.settings import Settings

COOKIE = "mailgate_session"
FLASH_COOKIE = "mailgate_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SEAL_CONTEXT = "mailgate-ui-session"
DEFAULT_SESSION_HOURS = 12.0
#: Tenant tokens that may open a web UI session (a role with a page; never an app's token).
PAGE_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER})


@dataclass(frozen=True, slots=True)
class UiOptions:
    """Settings of the web UI (read once where the application is built)."""

    #: ``Secure`` on cookies: True, False, or None for "when the request came over HTTPS".
    secure_cookies: bool | None = None
    #: A session ends this long after sign-in.
    session_hours: float = DEFAULT_SESSION_HOURS
    #: Failed sign-ins allowed per e-mail address, and per client address, per window.
    failures_per_address: int = 5
    failures_per_client: int = 30
    failure_window_seconds: float = 15 * 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> UiOptions:
        """``MAILGATE_UI_SECURE_COOKIES`` (auto, true, false) and ``MAILGATE_UI_SESSION_HOURS``."""
        secure = {"true": True, "false": False}.get(settings.ui_secure_cookies)
        return cls(secure_cookies=secure, session_hours=settings.ui_session_hours)


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session; :attr:`signed_in` is False before sign-in."""

    csrf: str
    issued: float
    memberships: tuple[Membership, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    admin_actor: str | None = None
    #: The server-side session (see :func:`mailgate.services.ui_sessions.open_session`).
    session_id: str | None = field(default=None, repr=False)

    @property
    def signed_in(self) -> bool:
        return bool(self.memberships) or self.admin_token is not None

    @property
    def display_name(self) -> str:
        if self.admin_token is not None:
            return "instance administrator"
        return self.memberships[0].email if self.memberships else ""

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32), issued=time.time())

    def signed_in_as(
        self,
        memberships: list[Membership] | None = None,
        *,
        admin_token: str | None = None,
        admin_actor: str | None = None,
        session_id: str | None = None,
    ) -> Session:
        """A new session (new CSRF token, new issue time) for a successful sign-in."""
        return Session(
            csrf=secrets.token_urlsafe(32),
            issued=time.time(),
            memberships=tuple(memberships or ()),
            admin_token=admin_token,
            admin_actor=admin_actor,
            session_id=session_id,
        )

    def with_membership(self, membership: Membership) -> Session:
        others = tuple(m for m in self.memberships if m.tenant_id != membership.tenant_id)
        return replace(self, memberships=(membership, *others))


def _membership_json(m: Membership) -> dict[str, str]:
    return {
        "t": m.tenant_id,
        "s": m.tenant_slug,
        "n": m.tenant_name,
        "u": m.user_id,
        "e": m.email,
        "r": m.role.value,
        "st": m.stamp,
    }


def _membership(data: Mapping[str, Any]) -> Membership:
    return Membership(
        tenant_id=str(data["t"]),
        tenant_slug=str(data["s"]),
        tenant_name=str(data["n"]),
        user_id=str(data["u"]),
        email=str(data["e"]),
        role=Role(data["r"]),
        stamp=str(data["st"]),
    )


class SessionCodec:
    """Seals sessions into cookie values and opens them again (None when invalid or old)."""

    def __init__(self, ctx: Context, options: UiOptions) -> None:
        self._ctx = ctx
        self._options = options

    def seal(self, session: Session) -> str:
        body = {
            "c": session.csrf,
            "i": session.issued,
            "m": [_membership_json(m) for m in session.memberships],
            "a": session.admin_token,
            "aa": session.admin_actor,
            "sid": session.session_id,
        }
        sealed = self._ctx.box.seal(json.dumps(body).encode("utf-8"), context=_SEAL_CONTEXT)
        return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def open(self, value: str | None) -> Session | None:
        if not value or len(value) > 8192:
            return None
        try:
            sealed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            data = json.loads(self._ctx.box.open(sealed, context=_SEAL_CONTEXT))
            session = Session(
                csrf=str(data["c"]),
                issued=float(data["i"]),
                memberships=tuple(_membership(m) for m in data["m"]),
                admin_token=data.get("a"),
                admin_actor=data.get("aa"),
                session_id=data.get("sid"),
            )
        except (MailgateError, binascii.Error, ValueError, KeyError, TypeError):
            return None
        if time.time() - session.issued > self._options.session_hours * 3600:
            return None
        return session

    def secure(self, request: Request) -> bool:
        if self._options.secure_cookies is not None:
            return self._options.secure_cookies
        return request.url.scheme == "https"

    def write(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.seal(session),
            max_age=int(self._options.session_hours * 3600),
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure(request),
        )

    def clear(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure(request)
        )


def csrf_matches(session: Session, given: str | None) -> bool:
    """Whether ``given`` is this session's CSRF token (constant-time)."""
    return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (``Origin``)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def principal_for(ctx: Context, session: Session, slug: str) -> Principal | None:
    """The principal of ``session`` for tenant ``slug``; None when the session has ended.

    A user without a membership in ``slug`` gets the principal of another membership, which
    the tenant check then answers with 404 (never 403 across tenants). A session found ended
    here (a deleted user, a changed password or role, a revoked administrator token) has its
    server-side record deleted too.
    """
    if not session.signed_in or not await ui_sessions.session_active(ctx, session.session_id):
        return None
    principal = await _current_principal(ctx, session, slug)
    if principal is None:
        await ui_sessions.end_session(ctx, session.session_id)
    return principal


async def _current_principal(ctx: Context, session: Session, slug: str) -> Principal | None:
    if session.admin_token is not None:
        try:
            principal = await auth.authenticate(ctx, session.admin_token)
        except Unauthenticated:
            return None
        # The instance administrator's token, or a tenant token of a role with a page.
        if principal.is_instance_admin or (principal.role in PAGE_ROLES and not principal.app_id):
            return principal
        return None
    if not session.memberships:
        return None
    chosen = next((m for m in session.memberships if m.tenant_slug == slug), None)
    current = await ui_sessions.refresh(ctx, chosen or session.memberships[0])
    return current.principal() if current is not None else None
