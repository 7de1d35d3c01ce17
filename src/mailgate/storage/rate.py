"""Per-server send rate limits shared by every worker: one counter row per server-minute."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update

from mailgate.storage.base import Tx
from mailgate.storage.tables import server_rate


def window_of(now: datetime) -> int:
    """The minute window ``now`` falls in (seconds since the epoch, floored to the minute)."""
    return int(now.timestamp()) // 60 * 60


async def reserve(tx: Tx, server_id: str, *, limit: int, wanted: int, now: datetime) -> int:
    """Take up to ``wanted`` sends from this minute's budget of ``limit``; returns how many.

    Runs inside the caller's write transaction, which serialises reservations (SQLite
    ``BEGIN IMMEDIATE``; on PostgreSQL the row lock of ``SELECT … FOR UPDATE``).
    """
    window = window_of(now)
    used = (
        await tx.execute(
            select(server_rate.c.used)
            .where(server_rate.c.server_id == server_id, server_rate.c.window_start == window)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if used is None:
        granted = min(limit, wanted)
        await tx.execute(
            insert(server_rate).values(server_id=server_id, window_start=window, used=granted)
        )
        await tx.execute(
            delete(server_rate).where(
                server_rate.c.server_id == server_id, server_rate.c.window_start < window
            )
        )
        return granted
    granted = max(0, min(limit - int(used), wanted))
    if granted:
        await tx.execute(
            update(server_rate)
            .where(server_rate.c.server_id == server_id, server_rate.c.window_start == window)
            .values(used=server_rate.c.used + granted)
        )
    return granted
