"""What every page of the web UI shares: templates, the signed-in caller, CSRF, errors.

Each tenant page asks for a :class:`Page` with :func:`page` and a permission. That one
dependency reads the session, refuses a state-changing request without this session's CSRF
token (or from another origin), turns the session into a principal and lets
:func:`mailgate.services.auth.authorize` check tenant and permission, exactly as the REST API
does: 404 for another tenant, 403 without the permission. :class:`UiRoute` turns the errors
of the services into HTML pages (or JSON for the few ``fetch`` endpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Annotated, Any
from urllib.parse import quote, unquote

import jinja2
from fastapi import Depends, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from mailgate.domain.roles import Permission
from mailgate.errors import FieldError, PermissionDenied, PolicyViolation, RequestError
from mailgate.services import auth
from mailgate.services.context import Caller, Context
from mailgate.services.ratelimit import SlidingWindow
from mailgate.web.ui.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    FLASH_COOKIE,
    Session,
    SessionCodec,
    UiOptions,
    csrf_matches,
    principal_for,
    same_origin,
)

log = logging.getLogger("mailgate.web.ui")

TEMPLATE_DIR = FsPath(__file__).parent / "templates"
STATIC_DIR = FsPath(__file__).parent / "static"
FRAGMENT_HEADER = "x-mailgate-fragment"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: The policy of every UI page: only Mailgate's own script and style, no inline code.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class SignInRequired(Exception):
    """No signed-in session (or it ended): sign in first."""


class CsrfFailed(PermissionDenied):
    """A state-changing request without this session's CSRF token, or from another origin."""

    def __init__(self) -> None:
        super().__init__(
            "This form has expired or did not come from this site; reload the page and try again."
        )


class LoginLimits:
    """Failed sign-ins per e-mail address and per client; a refused attempt does not count.

    An address counts as sign-in reads it (surrounding spaces dropped, any case). Attempts
    take :meth:`turn` per address and per client, so that concurrent attempts cannot all
    pass :meth:`wait` before the first failure is counted.
    """

    def __init__(self, options: UiOptions) -> None:
        window = options.failure_window_seconds
        self._by_address = SlidingWindow(options.failures_per_address, window)
        self._by_client = SlidingWindow(options.failures_per_client, window)
        # key -> (lock, attempts holding or waiting for it); dropped when none is left.
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    @staticmethod
    def _address(address: str) -> str:
        return address.strip().lower()

    def wait(self, *, address: str, client: str) -> float:
        return max(self._by_address.wait(self._address(address)), self._by_client.wait(client))

    def failed(self, *, address: str, client: str) -> None:
        self._by_address.record(self._address(address))
        self._by_client.record(client)

    @asynccontextmanager
    async def turn(self, *, address: str, client: str) -> AsyncIterator[None]:
        """One attempt at a time for this client and for this address (in that order)."""
        keys = (f"client:{client}", f"address:{self._address(address)}")
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                lock, users = self._turns.get(key) or (asyncio.Lock(), 0)
                self._turns[key] = (lock, users + 1)
                stack.callback(self._leave, key)
                await stack.enter_async_context(lock)
            yield

    def _leave(self, key: str) -> None:
        lock, users = self._turns[key]
        if users <= 1:
            del self._turns[key]
        else:
            self._turns[key] = (lock, users - 1)


@dataclass(slots=True)
class Ui:
    """The web UI of one application (``app.state.mailgate_ui``)."""

    ctx: Context
    options: UiOptions
    codec: SessionCodec
    env: jinja2.Environment
    login_limits: LoginLimits


def make_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def get_ui(request: Request) -> Ui:
    ui: Ui = request.app.state.mailgate_ui
    return ui


UiDep = Annotated[Ui, Depends(get_ui)]


def load_session(request: Request, ui: Ui) -> Session:
    """This request's session (an anonymous one when there is no valid cookie)."""
    cached = getattr(request.state, "mailgate_session", None)
    if isinstance(cached, Session):
        return cached
    session = ui.codec.open(request.cookies.get(COOKIE)) or Session.anonymous()
    request.state.mailgate_session = session
    return session


async def check_csrf(request: Request, session: Session) -> None:
    """Refuse a state-changing request without the session's token or from elsewhere."""
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not same_origin(request) or not csrf_matches(session, given):
        raise CsrfFailed()


@dataclass(frozen=True, slots=True)
class Page:
    """A signed-in caller on one tenant page."""

    ui: Ui
    request: Request
    session: Session
    caller: Caller

    @property
    def ctx(self) -> Context:
        return self.ui.ctx

    @property
    def tenant(self) -> str:
        return self.caller.tenant.slug

    def can(self, permission: Permission | str) -> bool:
        return self.caller.principal.can(Permission(permission))

    def url(self, suffix: str = "") -> str:
        return f"/t/{quote(self.tenant)}{suffix}"

    async def form(self) -> FormData:
        return await self.request.form()


def page(permission: Permission) -> Callable[..., Coroutine[Any, Any, Page]]:
    """A dependency: the signed-in caller of ``{tenant}`` holding ``permission``."""

    async def dependency(
        request: Request, ui: UiDep, tenant: Annotated[str, Path(max_length=64)]
    ) -> Page:
        session = load_session(request, ui)
        if not session.signed_in:
            raise SignInRequired()
        await check_csrf(request, session)
        principal = await principal_for(ui.ctx, session, tenant)
        if principal is None:
            raise SignInRequired()
        caller = await auth.authorize(ui.ctx, principal, tenant, permission)
        return Page(ui=ui, request=request, session=session, caller=caller)

    return dependency


NAV: tuple[tuple[str, str, Permission], ...] = (
    ("settings", "Email Settings", Permission.VIEW_EMAIL_CONFIGURATIONS),
    ("apps", "Apps", Permission.VIEW_EMAIL_CONFIGURATIONS),
    ("logs", "Email Logs", Permission.VIEW_EMAIL_LOGS),
    ("captured", "Captured mail", Permission.VIEW_EMAIL_LOGS),
    ("suppressions", "Suppressions", Permission.VIEW_EMAIL_LOGS),
    ("templates", "Templates", Permission.VIEW_EMAIL_CONFIGURATIONS),
    ("dkim", "DKIM", Permission.VIEW_EMAIL_CONFIGURATIONS),
    ("keystores", "S/MIME", Permission.VIEW_EMAIL_CONFIGURATIONS),
    ("webhooks", "Webhooks", Permission.VIEW_EMAIL_CONFIGURATIONS),
    ("audit", "Audit log", Permission.VIEW_EMAIL_CONFIGURATIONS),
    ("users", "Users", Permission.MANAGE_MEMBERS),
    ("tokens", "API tokens", Permission.MANAGE_MEMBERS),
)


def nav_items(current: Page | None) -> list[dict[str, str]]:
    if current is None:
        return []
    return [
        {"key": key, "label": label, "url": current.url(f"/{key}")}
        for key, label, permission in NAV
        if current.can(permission)
    ]


def security_headers(response: Response, *, csp: str = PAGE_CSP) -> None:
    response.headers.setdefault("Content-Security-Policy", csp)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")


def render(
    request: Request,
    template: str,
    *,
    ui: Ui | None = None,
    current: Page | None = None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """Render ``template`` (a whole page, or its fragment for the dialogs' ``fetch``)."""
    ui = ui or (current.ui if current else get_ui(request))
    session = current.session if current else load_session(request, ui)
    flash = unquote(request.cookies.get(FLASH_COOKIE) or "")[:500]
    html = ui.env.get_template(template).render(
        request=request,
        page=current,
        csrf=session.csrf,
        session=session,
        nav=nav_items(current),
        flash=flash,
        fragment=request.headers.get(FRAGMENT_HEADER) == "1",
        **values,
    )
    response = HTMLResponse(html, status_code=status)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def confirm_delete(current: Page, *, question: str, action: str, back: str) -> HTMLResponse:
    """The page (or dialog) that asks before a delete: ``question``, then a POST to ``action``
    or back to ``back`` (paths inside the tenant)."""
    return render(
        current.request,
        "confirm_delete.html",
        current=current,
        question=question,
        action=current.url(action),
        back=current.url(back),
    )


def redirect(url: str, *, flash: str | None = None) -> RedirectResponse:
    """A 303 to ``url`` (after a POST), with a one-time message for the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(FLASH_COOKIE, quote(flash), path="/", httponly=True, samesite="lax")
    return response


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def error_json(status: int, title: str, detail: str, errors: list[FieldError]) -> JSONResponse:
    body = {
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"field": e.field, "message": e.message} for e in errors],
    }
    return JSONResponse(body, status_code=status)


def _error_response(request: Request, status: int, title: str, detail: str) -> Response:
    if wants_json(request):
        return error_json(status, title, detail, [])
    return render(request, "error.html", status=status, title=title, detail=detail)


class UiRoute(APIRoute):
    """Turns sign-in needs and service errors into pages, and adds the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = _sign_in_first(request)
            except RequestError as exc:
                if wants_json(request):
                    response = error_json(exc.status, exc.title, exc.detail, exc.errors)
                else:
                    response = _error_response(request, exc.status, exc.title, exc.detail)
            except PolicyViolation as exc:
                response = _error_response(request, 422, "Refused by policy", str(exc))
            security_headers(response)
            return response

        return guarded


def _sign_in_first(request: Request) -> Response:
    if wants_json(request):
        return error_json(401, "Sign in first", "Your session has ended; sign in again.", [])
    target = request.url.path if request.method in SAFE_METHODS else "/"
    if request.url.query and request.method in SAFE_METHODS:
        target += "?" + request.url.query
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
