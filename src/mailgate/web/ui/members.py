"""Users and API tokens of a tenant: invite, change role, remove; create (shown once), revoke.

Everything goes through :mod:`mailgate.services.tenants`, as the REST API's members routes
do, with the same permission (``members:manage``). A tenant without users offers to create
its first owner. A new token's text is shown once, in the answer to its creation only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from mailgate.domain.roles import Permission, Role
from mailgate.errors import NotFound, RequestError
from mailgate.services import apps as app_svc
from mailgate.services import tenants as tenant_svc
from mailgate.web.ui.forms import field_messages, form_text
from mailgate.web.ui.pages import Page, UiRoute, confirm_delete, page, redirect, render

router = APIRouter(prefix="/t/{tenant}", route_class=UiRoute, include_in_schema=False)

Members = Annotated[Page, Depends(page(Permission.MANAGE_MEMBERS))]
ROLES = [(r.value, r.value.title()) for r in Role]
ROLE_HINTS = {
    "owner": "everything, users and tokens included",
    "admin": "everything but users, tokens and the tenant",
    "developer": "apps, sending and the logs",
    "sender": "sending through the API only (no page)",
    "viewer": "read the settings and the logs",
}


async def _users_page(
    current: Page,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
) -> Response:
    users = await tenant_svc.list_users(current.ctx, current.caller)
    return render(
        current.request,
        "users.html",
        current=current,
        status=status,
        users=users,
        roles=ROLES,
        role_hints=ROLE_HINTS,
        values=values or {"role": "owner" if not users else "viewer"},
        errors=errors or {},
        message=message,
    )


@router.get("/users")
async def users_page(current: Members) -> Response:
    return await _users_page(current)


@router.post("/users")
async def invite_user(current: Members) -> Response:
    form = await current.form()
    values = {"email": form_text(form, "email"), "role": form_text(form, "role")}
    try:
        user = await tenant_svc.create_user(
            current.ctx,
            current.caller,
            email=values["email"],
            password=str(form.get("password") or ""),
            role=values["role"],
        )
    except RequestError as exc:
        if isinstance(exc, NotFound):
            raise
        errors, message = field_messages(exc)
        if form.get("password"):
            values["_cleared"] = "password"
        return await _users_page(
            current, status=exc.status, values=values, errors=errors, message=message
        )
    return redirect(current.url("/users"), flash=f"{user.email} can now sign in as {user.role}.")


@router.post("/users/{user_id}/role")
async def change_role(user_id: str, current: Members) -> Response:
    form = await current.form()
    user = await tenant_svc.update_user(
        current.ctx, current.caller, user_id, role=form_text(form, "role"), password=None
    )
    return redirect(current.url("/users"), flash=f"{user.email} is now {user.role}.")


@router.get("/users/{user_id}/delete")
async def confirm_remove_user(user_id: str, current: Members) -> Response:
    user = await tenant_svc.get_user(current.ctx, current.caller, user_id)
    return confirm_delete(
        current,
        question=remove_question(user.email),
        action=f"/users/{user.id}/delete",
        back="/users",
    )


@router.post("/users/{user_id}/delete")
async def remove_user(user_id: str, current: Members) -> Response:
    user = await tenant_svc.get_user(current.ctx, current.caller, user_id)
    await tenant_svc.delete_user(current.ctx, current.caller, user_id)
    return redirect(current.url("/users"), flash=f"{user.email} was removed.")


def remove_question(email: str) -> str:
    return f"Are you sure you want to remove {email}? They can no longer sign in."


# API tokens ---------------------------------------------------------------------------------


async def _tokens_page(
    current: Page,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    created: dict[str, str] | None = None,
) -> Response:
    tokens = await tenant_svc.list_tokens(current.ctx, current.caller)
    apps = await app_svc.list_apps(current.ctx, current.caller)
    return render(
        current.request,
        "tokens.html",
        current=current,
        status=status,
        tokens=tokens,
        roles=ROLES,
        apps=apps,
        app_names={a.id: a.name for a in apps},
        values=values or {"role": "sender"},
        errors=errors or {},
        message=message,
        created=created,
    )


@router.get("/tokens")
async def tokens_page(current: Members) -> Response:
    return await _tokens_page(current)


@router.post("/tokens")
async def create_token(current: Members) -> Response:
    form = await current.form()
    values = {
        "name": form_text(form, "name"),
        "role": form_text(form, "role"),
        "app": form_text(form, "app"),
    }
    try:
        record, token = await tenant_svc.create_token(
            current.ctx,
            current.caller,
            name=values["name"],
            role=values["role"],
            app=values["app"] or None,
        )
    except RequestError as exc:
        if isinstance(exc, NotFound):
            raise
        errors, message = field_messages(exc)
        return await _tokens_page(
            current, status=exc.status, values=values, errors=errors, message=message
        )
    # The token's text is in this answer only (never stored readable, never shown again).
    return await _tokens_page(current, created={"name": record.name, "token": token})


@router.get("/tokens/{token_id}/delete")
async def confirm_revoke_token(token_id: str, current: Members) -> Response:
    tokens = await tenant_svc.list_tokens(current.ctx, current.caller)
    found = next((t for t in tokens if t.id == token_id), None)
    if found is None:
        raise NotFound(f"No token {token_id!r}.")
    return confirm_delete(
        current,
        question=revoke_question(found.name),
        action=f"/tokens/{found.id}/delete",
        back="/tokens",
    )


@router.post("/tokens/{token_id}/delete")
async def revoke_token(token_id: str, current: Members) -> Response:
    await tenant_svc.delete_token(current.ctx, current.caller, token_id)
    return redirect(current.url("/tokens"), flash="The token is revoked.")


def revoke_question(name: str) -> str:
    return f"Are you sure you want to revoke the token {name}? Programs using it stop working."
