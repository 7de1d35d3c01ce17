"""Tenants and their stages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.domain.model import SEEDED_STAGES, Stage, Tenant
from mailgate.errors import Conflict, FieldError, NotFound
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.tables import mail_servers, stages, tenants, test_lists


def _tenant(row: Any) -> Tenant:
    return Tenant(
        id=row.id,
        slug=row.slug,
        name=row.name,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


def _stage(row: Any) -> Stage:
    return Stage(
        id=row.id, tenant_id=row.tenant_id, name=row.name, mail_server_id=row.mail_server_id
    )


async def create_tenant(tx: Tx, *, slug: str, name: str) -> Tenant:
    """Create a tenant and seed its stages (development, test, production)."""
    now = utcnow()
    base_ms = int(now.timestamp() * 1000)
    tenant_id = new_id()
    async with unique_guard("slug", f"A tenant with slug {slug!r} already exists."):
        await tx.execute(
            insert(tenants).values(
                id=tenant_id, slug=slug, name=name, created_at=now, updated_at=now
            )
        )
    await tx.execute(
        insert(stages),
        [
            # Ids are time-ordered: one millisecond apart keeps the seeded order on listing.
            {"id": new_id(now_ms=base_ms + i), "tenant_id": tenant_id, "name": s, "created_at": now}
            for i, s in enumerate(SEEDED_STAGES)
        ],
    )
    return Tenant(id=tenant_id, slug=slug, name=name, created_at=now, updated_at=now)


async def get_tenant(tx: Tx, slug: str) -> Tenant:
    row = (await tx.execute(select(tenants).where(tenants.c.slug == slug))).first()
    if row is None:
        raise NotFound(f"No tenant {slug!r}.")
    return _tenant(row)


async def get_tenant_by_id(tx: Tx, tenant_id: str) -> Tenant:
    row = (await tx.execute(select(tenants).where(tenants.c.id == tenant_id))).first()
    if row is None:
        raise NotFound("No such tenant.")
    return _tenant(row)


async def list_tenants(tx: Tx, *, limit: int, after: str | None) -> list[Tenant]:
    query = select(tenants).order_by(tenants.c.id).limit(limit)
    if after:
        query = query.where(tenants.c.id > after)
    return [_tenant(r) for r in await tx.execute(query)]


async def update_tenant(tx: Tx, tenant: Tenant, *, name: str) -> Tenant:
    now = utcnow()
    await tx.execute(
        update(tenants).where(tenants.c.id == tenant.id).values(name=name, updated_at=now)
    )
    return Tenant(tenant.id, tenant.slug, name, tenant.created_at, now)


async def delete_tenant(tx: Tx, tenant: Tenant) -> None:
    await tx.execute(delete(tenants).where(tenants.c.id == tenant.id))


async def list_stages(tx: Tx, tenant_id: str) -> list[Stage]:
    rows = await tx.execute(
        select(stages).where(stages.c.tenant_id == tenant_id).order_by(stages.c.id)
    )
    return [_stage(r) for r in rows]


async def get_stage(tx: Tx, tenant_id: str, name: str) -> Stage | None:
    row = (
        await tx.execute(
            select(stages).where(stages.c.tenant_id == tenant_id, stages.c.name == name)
        )
    ).first()
    return _stage(row) if row else None


async def create_stage(tx: Tx, tenant_id: str, name: str) -> Stage:
    stage_id = new_id()
    async with unique_guard("name", f"A stage named {name!r} already exists."):
        await tx.execute(
            insert(stages).values(id=stage_id, tenant_id=tenant_id, name=name, created_at=utcnow())
        )
    return Stage(id=stage_id, tenant_id=tenant_id, name=name, mail_server_id=None)


async def delete_stage(tx: Tx, stage: Stage) -> None:
    if stage.mail_server_id is not None:
        server_name = (
            await tx.execute(
                select(mail_servers.c.name).where(mail_servers.c.id == stage.mail_server_id)
            )
        ).scalar_one()
        message = (
            f"Stage {stage.name!r} is assigned to mail server {server_name!r}; "
            "remove it from that server first."
        )
        raise Conflict(message, errors=[FieldError("name", message)])
    # An app's list of the stage goes with it (a stage of the same name made later starts
    # without lists).
    await tx.execute(
        delete(test_lists).where(
            test_lists.c.tenant_id == stage.tenant_id, test_lists.c.stage == stage.name
        )
    )
    await tx.execute(delete(stages).where(stages.c.id == stage.id))
