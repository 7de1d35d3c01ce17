"""Sign-in, sign-out, the tenant picker and a tenant's home page."""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request, Response
from fastapi.responses import RedirectResponse

from mailgate.errors import RateLimited, RequestError, Unauthenticated
from mailgate.services import auth, ui_sessions
from mailgate.services import tenants as tenant_svc
from mailgate.web.ui.pages import (
    NAV,
    SignInRequired,
    UiDep,
    UiRoute,
    check_csrf,
    load_session,
    redirect,
    render,
)
from mailgate.web.ui.session import PAGE_ROLES, Session, principal_for

router = APIRouter(route_class=UiRoute, include_in_schema=False)

WRONG = "Wrong e-mail address or password."


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site (never another host), else None."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    return target


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_page(
    request: Request,
    ui: UiDep,
    *,
    status: int = 200,
    error: str | None = None,
    token_first: bool = False,
    **values: str,
) -> Response:
    session = load_session(request, ui)
    response = render(
        request,
        "login.html",
        ui=ui,
        status=status,
        error=error,
        next=values.get("next", ""),
        email=values.get("email", ""),
        token_first=token_first,
    )
    if not request.cookies.get("mailgate_session") or not session.signed_in:
        ui.codec.write(request, response, session)
    return response


@router.get("/")
async def root(request: Request, ui: UiDep) -> Response:
    session = load_session(request, ui)
    return RedirectResponse("/tenants" if session.signed_in else "/login", status_code=303)


@router.get("/login")
async def login_form(request: Request, ui: UiDep, next: str | None = None) -> Response:
    # Before any user exists, the only way in is a token: that form comes first.
    first = not await ui_sessions.instance_has_users(ui.ctx)
    return _login_page(request, ui, next=safe_next(next) or "", token_first=first)


def _throttle(ui: UiDep, *, address: str, client: str) -> None:
    wait = ui.login_limits.wait(address=address, client=client)
    if wait > 0:
        retry = max(math.ceil(wait), 1)
        raise RateLimited(
            f"Too many failed sign-ins. Try again in {math.ceil(retry / 60)} minute(s).",
            retry_after=retry,
        )


@router.post("/login")
async def login(
    request: Request,
    ui: UiDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    session = load_session(request, ui)
    await check_csrf(request, session)
    target = safe_next(next) or ""
    client = _client(request)
    async with ui.login_limits.turn(address=email, client=client):
        try:
            _throttle(ui, address=email, client=client)
            if not email.strip() or not password:
                raise Unauthenticated(WRONG)
            memberships = await ui_sessions.sign_in(ui.ctx, email, password)
        except RateLimited as exc:
            return _login_page(request, ui, status=429, error=exc.detail, next=target, email=email)
        except Unauthenticated:
            ui.login_limits.failed(address=email, client=client)
            return _login_page(request, ui, status=401, error=WRONG, next=target, email=email)
    session_id = await ui_sessions.open_session(ui.ctx, kind="user", hours=ui.options.session_hours)
    fresh = session.signed_in_as(memberships, session_id=session_id)
    if target:
        destination = target
    elif len(memberships) == 1:
        destination = f"/t/{memberships[0].tenant_slug}/"
    else:
        destination = "/tenants"
    response = redirect(destination)
    ui.codec.write(request, response, fresh)
    return response


@router.post("/login/admin")
async def login_admin(
    request: Request,
    ui: UiDep,
    token: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Sign in with a token: the instance administrator's, or a tenant token of a role with
    pages (owner, admin, developer, viewer; not an app's token)."""
    session = load_session(request, ui)
    await check_csrf(request, session)
    client = _client(request)
    error = (
        "That token does not open the web UI: use the instance-admin token or a tenant "
        "token of an owner, admin, developer or viewer (not an app's token)."
    )
    # Counted per client address: wrong tokens sent from one address never lock the
    # administrator out elsewhere (a token is a long random value, not a guessable password).
    key = f"instance-admin@{client}"
    async with ui.login_limits.turn(address=key, client=client):
        try:
            _throttle(ui, address=key, client=client)
            principal = await auth.authenticate(ui.ctx, token.strip() or None)
            tenant_token = principal.role in PAGE_ROLES and not principal.app_id
            if not principal.is_instance_admin and not tenant_token:
                raise Unauthenticated(error)
        except RateLimited as exc:
            return _login_page(request, ui, status=429, error=exc.detail, token_first=True)
        except Unauthenticated:
            ui.login_limits.failed(address=key, client=client)
            return _login_page(request, ui, status=401, error=error, token_first=True)
    session_id = await ui_sessions.open_session(
        ui.ctx, kind="admin", hours=ui.options.session_hours
    )
    if principal.tenant_id is not None and not principal.is_instance_admin:
        slug = await ui_sessions.tenant_slug(ui.ctx, principal.tenant_id)
        response = redirect(f"/t/{quote(slug)}/")
    else:
        response = redirect("/tenants")
    ui.codec.write(
        request,
        response,
        session.signed_in_as(
            admin_token=token.strip(), admin_actor=principal.actor, session_id=session_id
        ),
    )
    return response


@router.post("/logout")
async def logout(request: Request, ui: UiDep) -> Response:
    session = load_session(request, ui)
    await check_csrf(request, session)
    # The server-side session ends here: the cookie, even copied elsewhere, opens nothing.
    await ui_sessions.end_session(ui.ctx, session.session_id)
    response = redirect("/login", flash="You are signed out.")
    ui.codec.clear(request, response)
    return response


@router.get("/tenants")
async def tenant_picker(request: Request, ui: UiDep) -> Response:
    session = load_session(request, ui)
    if not session.signed_in:
        raise SignInRequired()
    if session.admin_token is not None:
        principal = await principal_for(ui.ctx, session, "")
        if principal is None:
            raise SignInRequired()
        if not principal.is_instance_admin and principal.tenant_id is not None:
            slug = await ui_sessions.tenant_slug(ui.ctx, principal.tenant_id)
            return RedirectResponse(f"/t/{quote(slug)}/", status_code=303)
        found = await tenant_svc.list_tenants(ui.ctx, principal, limit=500, cursor=None)
        choices = [{"slug": t.slug, "name": t.name, "role": "instance admin"} for t in found]
    else:
        if not await ui_sessions.session_active(ui.ctx, session.session_id):
            raise SignInRequired()
        choices = [
            {"slug": m.tenant_slug, "name": m.tenant_name, "role": m.role.value}
            for m in session.memberships
        ]
        if len(choices) == 1:
            return RedirectResponse(f"/t/{choices[0]['slug']}/", status_code=303)
    return render(request, "tenants.html", ui=ui, choices=choices)


@router.get("/t/{tenant}/")
async def tenant_home(
    request: Request, ui: UiDep, tenant: Annotated[str, Path(max_length=64)]
) -> Response:
    """The first page the caller may see in ``tenant``; 404 for another tenant."""
    session: Session = load_session(request, ui)
    if not session.signed_in:
        raise SignInRequired()
    principal = await principal_for(ui.ctx, session, tenant)
    if principal is None:
        raise SignInRequired()
    for key, _, permission in NAV:
        if principal.can(permission):
            await auth.authorize(ui.ctx, principal, tenant, permission)
            return RedirectResponse(f"/t/{tenant}/{key}", status_code=303)
    # A role without any page (sender): still 404 for another tenant, else say so.
    try:
        await auth.authorize(ui.ctx, principal, tenant, next(iter(NAV))[2])
    except RequestError as exc:
        if exc.status == 404:
            raise
    return render(
        request,
        "error.html",
        ui=ui,
        status=403,
        title="Nothing to show",
        detail=("Your role can send mail through the API but has no page in the web UI."),
    )
