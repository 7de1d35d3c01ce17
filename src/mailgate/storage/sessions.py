"""Server-side web UI sessions (``ui_sessions``): a row per signed-in session, by id hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select

from mailgate.storage.base import Tx
from mailgate.storage.tables import ui_sessions


async def create(
    tx: Tx, id_hash: str, *, kind: str, created_at: datetime, expires_at: datetime
) -> None:
    await tx.execute(
        insert(ui_sessions).values(
            id_hash=id_hash, kind=kind, created_at=created_at, expires_at=expires_at
        )
    )


async def is_active(tx: Tx, id_hash: str, *, now: datetime) -> bool:
    """Whether the session exists and has not expired."""
    row = (
        await tx.execute(
            select(ui_sessions.c.id_hash).where(
                ui_sessions.c.id_hash == id_hash, ui_sessions.c.expires_at > now
            )
        )
    ).first()
    return row is not None


async def remove(tx: Tx, id_hash: str) -> bool:
    """End one session; False when there was none."""
    result = await tx.execute(delete(ui_sessions).where(ui_sessions.c.id_hash == id_hash))
    return bool(result.rowcount)


async def purge(tx: Tx, *, now: datetime) -> int:
    """Forget the sessions that have expired."""
    result = await tx.execute(delete(ui_sessions).where(ui_sessions.c.expires_at <= now))
    return int(result.rowcount or 0)
