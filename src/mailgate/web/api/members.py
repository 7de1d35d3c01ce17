"""API tokens and users of a tenant."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mailgate.services import apps as app_svc
from mailgate.services import tenants as svc
from mailgate.web.api.schemas import (
    Page,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from mailgate.web.deps import CtxDep, ManageMembers

router = APIRouter(prefix="/api/v1/tenants/{tenant}")


@router.post("/tokens", status_code=201, tags=["members"])
async def create_token(body: TokenIn, ctx: CtxDep, who: ManageMembers) -> TokenCreated:
    """Create an API token; the token text is in this response only and stored hashed."""
    record, token = await svc.create_token(ctx, who, name=body.name, role=body.role, app=body.app)
    out = TokenOut.of(record, body.app)
    return TokenCreated(**out.model_dump(), token=token)


@router.get("/tokens", tags=["members"])
async def list_tokens(ctx: CtxDep, who: ManageMembers) -> Page[TokenOut]:
    apps = {a.id: a.name for a in await app_svc.list_apps(ctx, who)}
    tokens = await svc.list_tokens(ctx, who)
    return Page(items=[TokenOut.of(t, apps.get(t.app_id or "")) for t in tokens])


@router.delete("/tokens/{token_id}", status_code=204, tags=["members"])
async def delete_token(token_id: str, ctx: CtxDep, who: ManageMembers) -> Response:
    await svc.delete_token(ctx, who, token_id)
    return Response(status_code=204)


@router.post("/users", status_code=201, tags=["members"])
async def create_user(body: UserIn, ctx: CtxDep, who: ManageMembers) -> UserOut:
    user = await svc.create_user(ctx, who, email=body.email, password=body.password, role=body.role)
    return UserOut.of(user)


@router.get("/users", tags=["members"])
async def list_users(ctx: CtxDep, who: ManageMembers) -> Page[UserOut]:
    return Page(items=[UserOut.of(u) for u in await svc.list_users(ctx, who)])


@router.get("/users/{user_id}", tags=["members"])
async def get_user(user_id: str, ctx: CtxDep, who: ManageMembers) -> UserOut:
    return UserOut.of(await svc.get_user(ctx, who, user_id))


@router.patch("/users/{user_id}", tags=["members"])
async def update_user(user_id: str, body: UserPatch, ctx: CtxDep, who: ManageMembers) -> UserOut:
    user = await svc.update_user(
        ctx, who, user_id, role=body.role, password=body.password, email=body.email
    )
    return UserOut.of(user)


@router.delete("/users/{user_id}", status_code=204, tags=["members"])
async def delete_user(user_id: str, ctx: CtxDep, who: ManageMembers) -> Response:
    await svc.delete_user(ctx, who, user_id)
    return Response(status_code=204)
