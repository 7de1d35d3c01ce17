"""Request dependencies: the shared context, the principal and the permission check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Query, Request

from mailgate.domain.roles import Permission, Principal
from mailgate.services import auth
from mailgate.services.context import Caller, Context


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def get_principal(
    request: Request, ctx: Annotated[Context, Depends(get_context)]
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    return await auth.authenticate(ctx, token.strip() or None)


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
