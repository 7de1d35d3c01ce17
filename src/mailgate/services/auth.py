"""Authentication: bearer tokens (tenant tokens and the instance-admin token) and passwords."""

from __future__ import annotations

import asyncio
import hmac
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailgate.domain.model import Tenant, User
from mailgate.domain.roles import Permission, Principal, PrincipalKind, Role
from mailgate.errors import Unauthenticated
from mailgate.services.context import Caller, Context, check_tenant_access
from mailgate.storage import members, tenants

_hasher = PasswordHasher()
#: Checked against when no user has the address (a hash of a random, discarded password).
_DECOY_HASH = _hasher.hash(hmac.new(b"mailgate", b"decoy", "sha256").hexdigest())

INSTANCE_ADMIN_ROLE = "instance_admin"
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def authenticate(ctx: Context, token: str | None) -> Principal:
    """The principal behind a bearer token; 401 when there is none or it is unknown."""
    if not token:
        raise Unauthenticated("Send an API token: `Authorization: Bearer <token>`.")
    if ctx.admin_token and hmac.compare_digest(token.encode(), ctx.admin_token.encode()):
        return Principal(kind=PrincipalKind.INSTANCE_ADMIN, actor="instance-admin")
    async with ctx.db.read() as tx:
        record = await members.find_token(tx, token)
    if record is None:
        raise Unauthenticated("The API token is not valid (revoked or mistyped).")
    now = datetime.now(UTC)
    if record.last_used_at is None or now - record.last_used_at > LAST_USED_PRECISION:
        # Kept to the minute: a write per request would cost the send path dearly.
        async with ctx.db.transaction() as tx:
            await members.touch_token(tx, record.id)
    if record.role == INSTANCE_ADMIN_ROLE:
        return Principal(
            kind=PrincipalKind.INSTANCE_ADMIN,
            actor=f"token:{record.name}",
            token_id=record.id,
        )
    return Principal(
        kind=PrincipalKind.TOKEN,
        actor=f"token:{record.name}",
        tenant_id=record.tenant_id,
        role=Role(record.role),
        app_id=record.app_id,
        token_id=record.id,
    )


async def authorize(
    ctx: Context, principal: Principal, slug: str, permission: Permission
) -> Caller:
    """Resolve the tenant ``slug`` for ``principal`` and check ``permission`` in it."""
    async with ctx.db.read() as tx:
        tenant: Tenant = await tenants.get_tenant(tx, slug)
    return check_tenant_access(principal, tenant, permission)


async def sign_in(ctx: Context, email: str, password: str) -> list[User]:
    """The users (one per tenant) that ``email`` and ``password`` open (web UI), or 401.

    The same address may be a user of several tenants, each with its own password: each row
    is checked on its own, so a password set in one tenant never opens another.
    """
    async with ctx.db.read() as tx:
        found = await members.find_users_by_email(tx, email)
    # Argon2 is slow on purpose (tens of milliseconds): checked in a thread so the event
    # loop (API, SMTP listener, workers) keeps going. With no such user one check is spent
    # anyway, so that timing does not tell which addresses have an account.
    hashes = [stored for _, stored in found] or [_DECOY_HASH]
    matches = await asyncio.to_thread(lambda: [verify_password(h, password) for h in hashes])
    opened = [user for (user, _), match in zip(found, matches, strict=False) if match]
    if not opened:
        raise Unauthenticated("Wrong e-mail address or password.")
    return opened


async def create_admin_token(ctx: Context, name: str) -> str:
    """Create an instance-admin token (``mailgate admin create-token``); returns it once."""
    async with ctx.db.transaction() as tx:
        _, token = await members.create_token(
            tx, tenant_id=None, name=name, role=INSTANCE_ADMIN_ROLE, app_id=None
        )
    return token
