"""Tenant policies (quota, retention), app quotas and the shared quota counters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailgate.domain.policies import Quota, TenantPolicy
from mailgate.storage.base import Tx
from mailgate.storage.tables import app_quotas, quota_usage, tenant_policies


async def get_policy(tx: Tx, tenant_id: str) -> TenantPolicy:
    """The tenant's policy; the defaults (no quota, instance retention) without a row."""
    row = (
        await tx.execute(select(tenant_policies).where(tenant_policies.c.tenant_id == tenant_id))
    ).first()
    apps = await tx.execute(select(app_quotas).where(app_quotas.c.tenant_id == tenant_id))
    app_map = {a.app_id: Quota(a.quota_per_minute, a.quota_per_day) for a in apps}
    if row is None:
        return TenantPolicy(app_quotas=app_map)
    return TenantPolicy(
        quota=Quota(row.quota_per_minute, row.quota_per_day),
        app_quotas=app_map,
        retention_days={str(k): float(v) for k, v in (row.retention_days or {}).items()},
    )


async def save_policy(
    tx: Tx, tenant_id: str, quota: Quota, retention: Mapping[str, float], *, now: datetime
) -> None:
    values = {
        "quota_per_minute": quota.per_minute,
        "quota_per_day": quota.per_day,
        "retention_days": dict(retention),
        "updated_at": now,
    }
    done = await tx.execute(
        update(tenant_policies).where(tenant_policies.c.tenant_id == tenant_id).values(values)
    )
    if not done.rowcount:
        await tx.execute(insert(tenant_policies).values(tenant_id=tenant_id, **values))


async def save_app_quota(
    tx: Tx, tenant_id: str, app_id: str, quota: Quota, *, now: datetime
) -> None:
    await tx.execute(delete(app_quotas).where(app_quotas.c.app_id == app_id))
    if quota.is_set:
        await tx.execute(
            insert(app_quotas).values(
                app_id=app_id,
                tenant_id=tenant_id,
                quota_per_minute=quota.per_minute,
                quota_per_day=quota.per_day,
                updated_at=now,
            )
        )


async def retention_overrides(tx: Tx) -> dict[str, dict[str, float]]:
    """Every tenant's retention overrides, by tenant id (tenants without any left out)."""
    rows = await tx.execute(select(tenant_policies.c.tenant_id, tenant_policies.c.retention_days))
    return {
        r.tenant_id: {str(k): float(v) for k, v in r.retention_days.items()}
        for r in rows
        if r.retention_days
    }


async def take(tx: Tx, scope: str, window: int, *, limit: int, count: int) -> bool:
    """Count ``count`` messages in ``scope``'s window if they fit in ``limit``; whether they did.

    One conditional ``UPDATE`` (``used + count <= limit``) after an insert-if-absent, so it
    is atomic on SQLite and PostgreSQL alike: two processes never both take the last
    places, and a refused request counts nothing. Older windows of the scope are dropped
    when a new one starts.
    """
    if count > limit:
        return False
    insert_fn = pg_insert if tx.dialect.name == "postgresql" else sqlite_insert
    created = await tx.execute(
        insert_fn(quota_usage)
        .values(scope=scope, window_start=window, used=0)
        .on_conflict_do_nothing(index_elements=["scope", "window_start"])
    )
    if created.rowcount:
        await tx.execute(
            delete(quota_usage).where(
                quota_usage.c.scope == scope, quota_usage.c.window_start < window
            )
        )
    taken = await tx.execute(
        update(quota_usage)
        .where(
            quota_usage.c.scope == scope,
            quota_usage.c.window_start == window,
            quota_usage.c.used + count <= limit,
        )
        .values(used=quota_usage.c.used + count)
    )
    return bool(taken.rowcount)
