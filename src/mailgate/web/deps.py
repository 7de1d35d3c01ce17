"""Request dependencies: the shared context, the principal and the permission check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Query, Request

from mailgate.domain.roles import Permission, Principal
from mailgate.services import auth
from mailgate.services.context import Caller, Context
from mailgate.services.probe import Prober

#: Where the request guard (``mailgate.web.guard``) leaves the principal it authenticated
#: before the body was read: ``(Authorization header, principal)``.
PRINCIPAL_STATE = "mailgate_principal"


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def get_principal(
    request: Request, ctx: Annotated[Context, Depends(get_context)]
) -> Principal:
    header = request.headers.get("authorization", "")
    found = getattr(request.state, PRINCIPAL_STATE, None)
    if isinstance(found, tuple) and found[0] == header and isinstance(found[1], Principal):
        return found[1]
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    if not header and hasattr(request.app.state, "mailgate_ui"):
        signed_in = await _ui_principal(request, ctx)
        if signed_in is not None:
            return signed_in
    return await auth.authenticate(ctx, token.strip() or None)


async def _ui_principal(request: Request, ctx: Context) -> Principal | None:
    """The signed-in web UI user, so the UI's own scripts can call the API (e.g. sync).

    Writes need the session's CSRF token in ``X-CSRF-Token`` and a same-origin request:
    a cookie alone never authorises a change.
    """
    from mailgate.web.ui.pages import load_session
    from mailgate.web.ui.session import csrf_matches, principal_for, same_origin

    session = load_session(request, request.app.state.mailgate_ui)
    if not session.signed_in:
        return None
    if request.method not in ("GET", "HEAD") and not (
        same_origin(request) and csrf_matches(session, request.headers.get("x-csrf-token"))
    ):
        return None
    return await principal_for(ctx, session, request.path_params.get("tenant", ""))


CtxDep = Annotated[Context, Depends(get_context)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def caller(permission: Permission) -> Callable[..., Awaitable[Caller]]:
    """A dependency resolving ``{tenant}`` for the principal and checking ``permission``."""

    async def dependency(
        ctx: CtxDep,
        principal: PrincipalDep,
        tenant: Annotated[str, Path(description="Tenant slug")],
    ) -> Caller:
        return await auth.authorize(ctx, principal, tenant, permission)

    return dependency


T = TypeVar("T")


def page(
    items: list[T], key: Callable[[T], str], limit: int, cursor: str | None
) -> tuple[list[T], str | None]:
    """Slice a list sorted by ``key`` after ``cursor``; the next cursor when more remain."""
    if cursor:
        items = [i for i in items if key(i) > cursor]
    chunk = items[:limit]
    return chunk, (key(chunk[-1]) if len(items) > limit and chunk else None)


#: One page of a list (``limit``), and the callers every route asks for by permission.
Limit = Annotated[int, Query(ge=1, le=500)]
ViewConfig = Annotated[Caller, Depends(caller(Permission.VIEW_EMAIL_CONFIGURATIONS))]
ManageConfig = Annotated[Caller, Depends(caller(Permission.MANAGE_EMAIL_CONFIGURATIONS))]
ManageApps = Annotated[Caller, Depends(caller(Permission.MANAGE_APPS))]
ManageMembers = Annotated[Caller, Depends(caller(Permission.MANAGE_MEMBERS))]
ManageTenant = Annotated[Caller, Depends(caller(Permission.MANAGE_TENANT))]


def app_object(request: Request, name: str, kind: type[T], make: Callable[[], T]) -> T:
    """The application's ``app.state.<name>`` (made on first use), e.g. the rate limiters.

    An application may set it itself beforehand, for instance with other limits.
    """
    state = request.app.state
    found = getattr(state, name, None)
    if not isinstance(found, kind):
        found = make()
        setattr(state, name, found)
    return found


def get_prober(request: Request) -> Prober:
    """The application's :class:`Prober`, which holds the rate limits (``app.state.prober``).

    Shared by the API's and the UI's test-connection routes, so both count against the
    same limits.
    """
    return app_object(request, "prober", Prober, Prober)


ProberDep = Annotated[Prober, Depends(get_prober)]
