"""The audit log of configuration changes: who, what, when, which fields — never values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select

from mailgate.domain.ids import new_id
from mailgate.domain.model import AuditEntry
from mailgate.storage.base import Tx, as_utc, utcnow
from mailgate.storage.tables import audit_log


async def record(
    tx: Tx,
    *,
    tenant_id: str | None,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | None,
    object_name: str | None,
    changes: Iterable[str] = (),
) -> None:
    """Append one entry. ``changes`` are field *names*; values are never recorded."""
    await tx.execute(
        insert(audit_log).values(
            id=new_id(),
            tenant_id=tenant_id,
            at=utcnow(),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_name=object_name,
            changes=sorted(set(changes)),
        )
    )


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        tenant_id=row.tenant_id,
        at=as_utc(row.at),  # type: ignore[arg-type]
        actor=row.actor,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        object_name=row.object_name,
        changes=tuple(row.changes or ()),
    )


async def list_entries(
    tx: Tx, tenant_id: str, *, limit: int, before: str | None
) -> list[AuditEntry]:
    """Newest first; ``before`` is the id of the last entry of the previous page."""
    query = (
        select(audit_log)
        .where(audit_log.c.tenant_id == tenant_id)
        .order_by(audit_log.c.id.desc())
        .limit(limit)
    )
    if before:
        query = query.where(audit_log.c.id < before)
    return [_entry(r) for r in await tx.execute(query)]
