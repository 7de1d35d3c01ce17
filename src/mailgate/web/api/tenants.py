"""Tenants, stages and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from mailgate.domain.roles import Permission
from mailgate.services import tenants as svc
from mailgate.services.context import Caller
from mailgate.web.api.schemas import (
    AuditOut,
    Page,
    StageIn,
    StageOut,
    TenantIn,
    TenantOut,
    TenantPatch,
)
from mailgate.web.deps import (
    CtxDep,
    Limit,
    ManageConfig,
    ManageTenant,
    PrincipalDep,
    ViewConfig,
    caller,
)

router = APIRouter(prefix="/api/v1/tenants")


@router.post("", status_code=201, tags=["tenants"])
async def create_tenant(body: TenantIn, ctx: CtxDep, principal: PrincipalDep) -> TenantOut:
    """Create a tenant (instance admin); its stages development, test, production are seeded."""
    return TenantOut.of(await svc.create_tenant(ctx, principal, slug=body.slug, name=body.name))


@router.get("", tags=["tenants"])
async def list_tenants(
    ctx: CtxDep, principal: PrincipalDep, limit: Limit = 100, cursor: str | None = None
) -> Page[TenantOut]:
    items = await svc.list_tenants(ctx, principal, limit=limit + 1, cursor=cursor)
    more = len(items) > limit
    items = items[:limit]
    return Page(
        items=[TenantOut.of(t) for t in items],
        next_cursor=items[-1].id if more and items else None,
    )


@router.get("/{tenant}", tags=["tenants"])
async def get_tenant(
    who: Annotated[Caller, Depends(caller(Permission.VIEW_EMAIL_CONFIGURATIONS))],
) -> TenantOut:
    return TenantOut.of(who.tenant)


@router.patch("/{tenant}", tags=["tenants"])
async def update_tenant(body: TenantPatch, ctx: CtxDep, who: ManageTenant) -> TenantOut:
    return TenantOut.of(await svc.update_tenant(ctx, who, name=body.name))


@router.delete("/{tenant}", status_code=204, tags=["tenants"])
async def delete_tenant(ctx: CtxDep, who: ManageTenant) -> Response:
    await svc.delete_tenant(ctx, who)
    return Response(status_code=204)


@router.get("/{tenant}/stages", tags=["stages"])
async def list_stages(ctx: CtxDep, who: ViewConfig) -> Page[StageOut]:
    return Page(items=[StageOut.of(s) for s in await svc.list_stages(ctx, who)])


@router.post("/{tenant}/stages", status_code=201, tags=["stages"])
async def create_stage(body: StageIn, ctx: CtxDep, who: ManageConfig) -> StageOut:
    return StageOut.of(await svc.create_stage(ctx, who, body.name))


@router.delete("/{tenant}/stages/{name}", status_code=204, tags=["stages"])
async def delete_stage(name: str, ctx: CtxDep, who: ManageConfig) -> Response:
    await svc.delete_stage(ctx, who, name)
    return Response(status_code=204)


@router.get("/{tenant}/audit", tags=["audit"])
async def list_audit(
    ctx: CtxDep,
    who: ViewConfig,
    limit: Limit = 100,
    cursor: str | None = None,
) -> Page[AuditOut]:
    """Configuration changes, newest first: who, what, when and which fields (never values)."""
    entries = await svc.list_audit(ctx, who, limit=limit + 1, cursor=cursor)
    more = len(entries) > limit
    entries = entries[:limit]
    return Page(
        items=[AuditOut.of(e) for e in entries],
        next_cursor=entries[-1].id if more and entries else None,
    )
