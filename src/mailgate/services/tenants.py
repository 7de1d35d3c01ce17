"""Tenants, stages, members (tokens and users) and the audit log."""

from __future__ import annotations

import re

from mailgate.domain.model import ApiToken, AuditEntry, Stage, Tenant, User
from mailgate.domain.roles import Principal, Role
from mailgate.errors import NotFound, PermissionDenied, ValidationFailed
from mailgate.services import audit_trail
from mailgate.services.auth import hash_password
from mailgate.services.context import Caller, Context
from mailgate.storage import apps, audit, members, tenants

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_STAGE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _check_slug(slug: str) -> None:
    if not _SLUG.match(slug):
        raise ValidationFailed.field(
            "slug", "use 1-64 lower-case letters, digits and inner hyphens (e.g. 'acme-prod')"
        )


def _check_name(name: str, field: str = "name") -> str:
    clean = name.strip()
    if not clean:
        raise ValidationFailed.field(field, "must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in clean):
        raise ValidationFailed.field(field, "must not contain control characters")
    return clean


async def create_tenant(ctx: Context, principal: Principal, *, slug: str, name: str) -> Tenant:
    if not principal.is_instance_admin:
        raise PermissionDenied("Only the instance admin creates tenants.")
    _check_slug(slug)
    clean = _check_name(name)
    async with ctx.db.transaction() as tx:
        tenant = await tenants.create_tenant(tx, slug=slug, name=clean)
        await audit.record(
            tx,
            tenant_id=tenant.id,
            actor=principal.actor,
            action="tenant.create",
            object_type="tenant",
            object_id=tenant.id,
            object_name=slug,
            changes=["slug", "name"],
        )
    return tenant


async def list_tenants(
    ctx: Context, principal: Principal, *, limit: int, cursor: str | None
) -> list[Tenant]:
    if not principal.is_instance_admin:
        raise PermissionDenied("Only the instance admin lists tenants.")
    async with ctx.db.read() as tx:
        return await tenants.list_tenants(tx, limit=limit, after=cursor)


async def update_tenant(ctx: Context, caller: Caller, *, name: str) -> Tenant:
    clean = _check_name(name)
    async with ctx.db.transaction() as tx:
        tenant = await tenants.update_tenant(tx, caller.tenant, name=clean)
        await audit_trail.record(
            tx, caller, "tenant.update", "tenant", tenant.id, tenant.slug, ["name"]
        )
    return tenant


async def delete_tenant(ctx: Context, caller: Caller) -> None:
    async with ctx.db.transaction() as tx:
        await tenants.delete_tenant(tx, caller.tenant)


# Stages ---------------------------------------------------------------------------------


async def list_stages(ctx: Context, caller: Caller) -> list[Stage]:
    async with ctx.db.read() as tx:
        return await tenants.list_stages(tx, caller.tenant_id)


async def create_stage(ctx: Context, caller: Caller, name: str) -> Stage:
    if not _STAGE.match(name):
        raise ValidationFailed.field(
            "name", "use 1-64 lower-case letters, digits, '-' or '_' (e.g. 'staging')"
        )
    async with ctx.db.transaction() as tx:
        stage = await tenants.create_stage(tx, caller.tenant_id, name)
        await audit_trail.record(tx, caller, "stage.create", "stage", stage.id, name, ["name"])
    return stage


async def delete_stage(ctx: Context, caller: Caller, name: str) -> None:
    async with ctx.db.transaction() as tx:
        stage = await tenants.get_stage(tx, caller.tenant_id, name)
        if stage is None:
            raise NotFound(f"No stage {name!r}.")
        await tenants.delete_stage(tx, stage)
        await audit_trail.record(tx, caller, "stage.delete", "stage", stage.id, name)


# Tokens and users -------------------------------------------------------------------------


def _role(value: str, field: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationFailed.field(field, f"must be one of {allowed}") from None


async def create_token(
    ctx: Context, caller: Caller, *, name: str, role: str, app: str | None
) -> tuple[ApiToken, str]:
    clean = _check_name(name)
    the_role = _role(role)
    async with ctx.db.transaction() as tx:
        app_id = None
        if app is not None:
            found = await apps.find_app(tx, caller.tenant_id, app)
            if found is None:
                raise ValidationFailed.field("app", f"no app named {app!r} in this tenant")
            app_id = found.id
        record, token = await members.create_token(
            tx, tenant_id=caller.tenant_id, name=clean, role=the_role.value, app_id=app_id
        )
        await audit_trail.record(
            tx, caller, "token.create", "token", record.id, clean, ["name", "role"]
        )
    return record, token


async def list_tokens(ctx: Context, caller: Caller) -> list[ApiToken]:
    async with ctx.db.read() as tx:
        return await members.list_tokens(tx, caller.tenant_id)


async def delete_token(ctx: Context, caller: Caller, token_id: str) -> None:
    async with ctx.db.transaction() as tx:
        record = await members.delete_token(tx, caller.tenant_id, token_id)
        await audit_trail.record(tx, caller, "token.delete", "token", record.id, record.name)


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_password(password: str) -> None:
    if len(password) < 10:
        raise ValidationFailed.field("password", "must be at least 10 characters long")


async def create_user(
    ctx: Context, caller: Caller, *, email: str, password: str, role: str
) -> User:
    if not _EMAIL.match(email):
        raise ValidationFailed.field("email", "is not a valid e-mail address")
    _check_password(password)
    the_role = _role(role)
    async with ctx.db.transaction() as tx:
        user = await members.create_user(
            tx,
            tenant_id=caller.tenant_id,
            email=email.lower(),
            password_hash=hash_password(password),
            role=the_role,
        )
        await audit_trail.record(
            tx, caller, "user.create", "user", user.id, user.email, ["email", "role"]
        )
    return user


async def list_users(ctx: Context, caller: Caller) -> list[User]:
    async with ctx.db.read() as tx:
        return await members.list_users(tx, caller.tenant_id)


async def update_user(
    ctx: Context,
    caller: Caller,
    user_id: str,
    *,
    role: str | None,
    password: str | None,
    email: str | None = None,
) -> User:
    """Change a user's role, password or e-mail address (test lists that name the user
    send to the new address from the next message on)."""
    the_role = _role(role) if role is not None else None
    if password is not None:
        _check_password(password)
    if email is not None and not _EMAIL.match(email):
        raise ValidationFailed.field("email", "is not a valid e-mail address")
    async with ctx.db.transaction() as tx:
        user = await members.get_user(tx, caller.tenant_id, user_id)
        updated = await members.update_user(
            tx,
            user,
            role=the_role,
            password_hash=hash_password(password) if password else None,
            email=email.lower() if email is not None else None,
        )
        given = (("email", email), ("role", role), ("password", password))
        changed = [n for n, v in given if v is not None]
        await audit_trail.record(tx, caller, "user.update", "user", user.id, user.email, changed)
    return updated


async def get_user(ctx: Context, caller: Caller, user_id: str) -> User:
    async with ctx.db.read() as tx:
        return await members.get_user(tx, caller.tenant_id, user_id)


async def delete_user(ctx: Context, caller: Caller, user_id: str) -> None:
    async with ctx.db.transaction() as tx:
        user = await members.get_user(tx, caller.tenant_id, user_id)
        await members.delete_user(tx, user)
        await audit_trail.record(tx, caller, "user.delete", "user", user.id, user.email)


async def list_audit(
    ctx: Context, caller: Caller, *, limit: int, cursor: str | None
) -> list[AuditEntry]:
    async with ctx.db.read() as tx:
        return await audit.list_entries(tx, caller.tenant_id, limit=limit, before=cursor)
