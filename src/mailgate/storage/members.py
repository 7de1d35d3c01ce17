"""API tokens (stored as SHA-256 hashes) and users (argon2 password hashes)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.domain.model import ApiToken, User
from mailgate.domain.roles import Role
from mailgate.errors import NotFound
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.tables import api_tokens, users

TOKEN_PREFIX = "mg_"  # noqa: S105 - a visible prefix, not a secret


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        role=row.role,
        app_id=row.app_id,
        prefix=row.prefix,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        last_used_at=as_utc(row.last_used_at),
    )


def _user(row: Any) -> User:
    return User(
        id=row.id,
        tenant_id=row.tenant_id,
        email=row.email,
        role=Role(row.role),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


async def create_token(
    tx: Tx, *, tenant_id: str | None, name: str, role: str, app_id: str | None
) -> tuple[ApiToken, str]:
    """Create a token; returns the record and the token text (shown only once)."""
    token = new_token()
    token_id = new_id()
    now = utcnow()
    await tx.execute(
        insert(api_tokens).values(
            id=token_id,
            tenant_id=tenant_id,
            name=name,
            role=role,
            app_id=app_id,
            token_hash=hash_token(token),
            prefix=token[:10],
            created_at=now,
        )
    )
    record = ApiToken(token_id, tenant_id, name, role, app_id, token[:10], now, None)
    return record, token


async def find_token(tx: Tx, token: str) -> ApiToken | None:
    row = (
        await tx.execute(select(api_tokens).where(api_tokens.c.token_hash == hash_token(token)))
    ).first()
    return _token(row) if row else None


async def list_tokens(tx: Tx, tenant_id: str) -> list[ApiToken]:
    rows = await tx.execute(
        select(api_tokens).where(api_tokens.c.tenant_id == tenant_id).order_by(api_tokens.c.id)
    )
    return [_token(r) for r in rows]


async def delete_token(tx: Tx, tenant_id: str, token_id: str) -> ApiToken:
    row = (
        await tx.execute(
            select(api_tokens).where(
                api_tokens.c.tenant_id == tenant_id, api_tokens.c.id == token_id
            )
        )
    ).first()
    if row is None:
        raise NotFound("No such token.")
    await tx.execute(delete(api_tokens).where(api_tokens.c.id == token_id))
    return _token(row)


async def delete_tokens_named(tx: Tx, tenant_id: str | None, name: str) -> None:
    """Revoke every token called ``name`` (of a tenant, or instance-admin tokens for None)."""
    owner = (
        api_tokens.c.tenant_id.is_(None)
        if tenant_id is None
        else api_tokens.c.tenant_id == tenant_id
    )
    await tx.execute(delete(api_tokens).where(owner, api_tokens.c.name == name))


async def touch_token(tx: Tx, token_id: str) -> None:
    await tx.execute(
        update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=utcnow())
    )


async def create_user(
    tx: Tx, *, tenant_id: str, email: str, password_hash: str, role: Role
) -> User:
    now = utcnow()
    user_id = new_id()
    async with unique_guard("email", f"A user {email!r} already exists in this tenant."):
        await tx.execute(
            insert(users).values(
                id=user_id,
                tenant_id=tenant_id,
                email=email,
                password_hash=password_hash,
                role=role.value,
                created_at=now,
                updated_at=now,
            )
        )
    return User(user_id, tenant_id, email, role, now, now)


async def any_user(tx: Tx) -> bool:
    """Whether the instance has a user in any tenant (the sign-in page's first choice)."""
    return (await tx.execute(select(users.c.id).limit(1))).first() is not None


async def list_users(tx: Tx, tenant_id: str) -> list[User]:
    rows = await tx.execute(
        select(users).where(users.c.tenant_id == tenant_id).order_by(users.c.id)
    )
    return [_user(r) for r in rows]


async def user_emails(tx: Tx, tenant_id: str, user_ids: Collection[str]) -> dict[str, str]:
    """The address of each of ``user_ids`` that is a user of the tenant, by id."""
    rows = await tx.execute(
        select(users.c.id, users.c.email).where(
            users.c.tenant_id == tenant_id, users.c.id.in_(list(user_ids))
        )
    )
    return {row.id: row.email for row in rows}


async def get_user(tx: Tx, tenant_id: str, user_id: str) -> User:
    row = (
        await tx.execute(select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id))
    ).first()
    if row is None:
        raise NotFound("No such user.")
    return _user(row)


async def find_users_by_email(tx: Tx, email: str) -> list[tuple[User, str]]:
    """Every user with this e-mail (one per tenant) with its password hash, for sign-in."""
    rows = await tx.execute(select(users).where(users.c.email == email).order_by(users.c.id))
    return [(_user(row), row.password_hash) for row in rows]


async def update_user(
    tx: Tx,
    user: User,
    *,
    role: Role | None,
    password_hash: str | None,
    email: str | None = None,
) -> User:
    values: dict[str, object] = {"updated_at": utcnow()}
    if email is not None:
        values["email"] = email
    if role is not None:
        values["role"] = role.value
    if password_hash is not None:
        values["password_hash"] = password_hash
    async with unique_guard("email", f"A user {email!r} already exists in this tenant."):
        await tx.execute(update(users).where(users.c.id == user.id).values(**values))
    return await get_user(tx, user.tenant_id, user.id)


async def delete_user(tx: Tx, user: User) -> None:
    await tx.execute(delete(users).where(users.c.id == user.id))
