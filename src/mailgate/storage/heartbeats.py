"""Worker heartbeats: one row per process running delivery workers (``worker_heartbeats``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from mailgate.storage.base import Tx, as_utc
from mailgate.storage.tables import worker_heartbeats as hb


@dataclass(frozen=True, slots=True)
class Heartbeat:
    name: str
    host: str
    pid: int
    loops: int
    claiming: int
    started_at: datetime
    seen_at: datetime


async def beat(tx: Tx, beat: Heartbeat) -> None:
    """Write this process's row (only the process itself writes it: no race)."""
    values = {
        "host": beat.host[:255],
        "pid": beat.pid,
        "loops": beat.loops,
        "claiming": beat.claiming,
        "started_at": beat.started_at,
        "seen_at": beat.seen_at,
    }
    done = await tx.execute(update(hb).where(hb.c.name == beat.name).values(**values))
    if not done.rowcount:
        await tx.execute(insert(hb).values(name=beat.name, **values))


async def remove(tx: Tx, name: str) -> None:
    await tx.execute(delete(hb).where(hb.c.name == name))


async def purge(tx: Tx, *, older_than: datetime) -> int:
    """Forget processes that stopped without saying so (killed, host lost)."""
    done = await tx.execute(delete(hb).where(hb.c.seen_at < older_than))
    return int(done.rowcount or 0)


async def seen_since(tx: Tx, since: datetime) -> list[Heartbeat]:
    """The processes whose last heartbeat is not older than ``since``."""
    rows = await tx.execute(select(hb).where(hb.c.seen_at >= since).order_by(hb.c.name))
    return [
        Heartbeat(
            name=r.name,
            host=r.host,
            pid=r.pid,
            loops=r.loops,
            claiming=r.claiming,
            started_at=as_utc(r.started_at) or r.started_at,
            seen_at=as_utc(r.seen_at) or r.seen_at,
        )
        for r in rows
    ]
