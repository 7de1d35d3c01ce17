"""Who a web UI session belongs to: sign-in by password, and re-checking a session.

The web UI keeps a sealed session cookie (``mailgate.web.ui.session``); what it holds is a
*membership*, a user row of one tenant, never a role. Every request turns the membership back
into a :class:`~mailgate.domain.roles.Principal` here, reading the user again, so a deleted
user is signed out at once and a changed role applies at once. A change of the user row
(password or role) also ends the sessions made before it: the session remembers the row's
``updated_at``.

A signed-in session also has a server-side row (:func:`open_session`): the sealed cookie
carries a random session id, the database its SHA-256. Signing out deletes the row
(:func:`end_session`), so a copied cookie stops working at once; every request checks it
(:func:`session_active`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailgate.domain.roles import Principal, PrincipalKind, Role
from mailgate.errors import NotFound
from mailgate.services import auth
from mailgate.services.context import Context
from mailgate.storage import members, sessions, tenants
from mailgate.storage.base import utcnow


@dataclass(frozen=True, slots=True)
class Membership:
    """A signed-in user's place in one tenant."""

    tenant_id: str
    tenant_slug: str
    tenant_name: str
    user_id: str
    email: str
    role: Role
    stamp: str  # the user row's updated_at, ISO 8601

    def principal(self) -> Principal:
        return Principal(
            kind=PrincipalKind.USER,
            actor=f"user:{self.email}",
            tenant_id=self.tenant_id,
            role=self.role,
        )


def _stamp(value: datetime) -> str:
    return value.isoformat()


async def sign_in(ctx: Context, email: str, password: str) -> list[Membership]:
    """The memberships that ``email`` and ``password`` open; 401 when none.

    Passwords are checked by :func:`mailgate.services.auth.sign_in` (argon2), once per user
    row, so a password set in one tenant never opens another.
    """
    opened = await auth.sign_in(ctx, email.strip(), password)
    memberships = []
    async with ctx.db.read() as tx:
        for user in opened:
            tenant = await tenants.get_tenant_by_id(tx, user.tenant_id)
            memberships.append(
                Membership(
                    tenant_id=tenant.id,
                    tenant_slug=tenant.slug,
                    tenant_name=tenant.name,
                    user_id=user.id,
                    email=user.email,
                    role=user.role,
                    stamp=_stamp(user.updated_at),
                )
            )
    return sorted(memberships, key=lambda m: m.tenant_name.lower())


async def refresh(ctx: Context, membership: Membership) -> Membership | None:
    """The membership as it is now, or None when the user or tenant is gone or changed."""
    async with ctx.db.read() as tx:
        try:
            user = await members.get_user(tx, membership.tenant_id, membership.user_id)
            tenant = await tenants.get_tenant_by_id(tx, membership.tenant_id)
        except NotFound:
            return None
    if _stamp(user.updated_at) != membership.stamp:
        return None
    return Membership(
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        tenant_name=tenant.name,
        user_id=user.id,
        email=user.email,
        role=user.role,
        stamp=membership.stamp,
    )


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


async def open_session(ctx: Context, *, kind: str, hours: float) -> str:
    """Record a new signed-in session lasting ``hours``; returns its id (for the cookie)."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    async with ctx.db.transaction() as tx:
        await sessions.purge(tx, now=now)
        await sessions.create(
            tx,
            _hash(session_id),
            kind=kind,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    return session_id


async def instance_has_users(ctx: Context) -> bool:
    """Whether anyone can sign in with a password yet (else the token sign-in comes first)."""
    async with ctx.db.read() as tx:
        return await members.any_user(tx)


async def tenant_slug(ctx: Context, tenant_id: str) -> str:
    """The slug of a tenant (a tenant token's session opens its own tenant)."""
    async with ctx.db.read() as tx:
        return (await tenants.get_tenant_by_id(tx, tenant_id)).slug


async def session_active(ctx: Context, session_id: str | None) -> bool:
    """Whether ``session_id`` names a session that has neither ended nor expired."""
    if not session_id:
        return False
    async with ctx.db.read() as tx:
        return await sessions.is_active(tx, _hash(session_id), now=utcnow())


async def end_session(ctx: Context, session_id: str | None) -> None:
    """End a session (sign-out); nothing happens for an unknown or empty id."""
    if not session_id:
        return
    async with ctx.db.transaction() as tx:
        await sessions.remove(tx, _hash(session_id))
