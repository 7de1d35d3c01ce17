"""Idempotency keys of send requests: same key and payload within 24 h → same response."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from mailgate.storage.base import Tx, as_utc, unique_guard
from mailgate.storage.tables import idempotency_keys

WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status_code: int
    response: Any
    created_at: datetime


async def find(tx: Tx, tenant_id: str, key: str, *, now: datetime) -> StoredResponse | None:
    """The stored response for ``key``, or None (an expired key is forgotten)."""
    row = (
        await tx.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.tenant_id == tenant_id, idempotency_keys.c.key == key
            )
        )
    ).first()
    if row is None:
        return None
    created = as_utc(row.created_at)
    assert created is not None
    if now - created > WINDOW:
        return None
    return StoredResponse(row.request_hash, row.status_code, row.response, created)


async def store(
    tx: Tx,
    tenant_id: str,
    key: str,
    *,
    request_hash: str,
    status_code: int,
    response: Any,
    now: datetime,
) -> None:
    """Remember the response of a request; a concurrent twin gets a 409."""
    await tx.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.tenant_id == tenant_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.created_at < now - WINDOW,
        )
    )
    async with unique_guard(
        "Idempotency-Key", "A request with this Idempotency-Key is already being processed."
    ):
        await tx.execute(
            insert(idempotency_keys).values(
                tenant_id=tenant_id,
                key=key,
                request_hash=request_hash,
                status_code=status_code,
                response=response,
                created_at=now,
            )
        )


async def purge(tx: Tx, *, now: datetime) -> int:
    result = await tx.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < now - WINDOW)
    )
    return int(result.rowcount or 0)
