"""Plain psycopg connections for the worker's transactions: reused while healthy, rolled
back after a failure, replaced after a lost connection, pinged only after being idle."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailgate.storage import pg_direct
from mailgate.storage.db import Database
from tests.conftest import PG_ENV


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (make test sets it when the server answers)")
    database = Database(url)
    yield database
    await database.dispose()


async def _pid(conn: Any) -> int:
    cursor = await conn.execute("SELECT pg_backend_pid()")
    row = await cursor.fetchone()
    return int(row[0])


async def _terminate(db: Database, pid: int) -> None:
    async with db.transaction() as tx:
        await tx.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")


async def test_a_connection_is_reused_and_a_failed_transaction_rolled_back(db: Database) -> None:
    first = await db.run_postgres(_pid)
    assert await db.run_postgres(_pid) == first

    async def fail_inside(conn: Any) -> None:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMPORARY TABLE direct_t (n integer)")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await db.run_postgres(fail_inside)

    async def exists(conn: Any) -> bool:
        cursor = await conn.execute("SELECT to_regclass('pg_temp.direct_t') IS NOT NULL")
        row = await cursor.fetchone()
        return bool(row[0])

    # Rolled back, and the same connection serves on.
    assert await db.run_postgres(exists) is False
    assert await db.run_postgres(_pid) == first


async def test_a_lost_idle_connection_is_noticed_by_the_ping_and_replaced(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await db.run_postgres(_pid)
    await _terminate(db, first)
    monkeypatch.setattr(pg_direct, "IDLE_PING_SECONDS", 0.0)
    second = await db.run_postgres(_pid)  # no error: the ping found it gone
    assert second != first


async def test_a_connection_lost_in_use_fails_that_call_only(db: Database) -> None:
    import psycopg

    first = await db.run_postgres(_pid)
    await _terminate(db, first)
    with pytest.raises(psycopg.OperationalError):
        await db.run_postgres(_pid)  # used at once: not pinged, the failure is reported
    assert await db.run_postgres(_pid) not in (first, None)


async def test_dispose_closes_the_plain_connections(db: Database) -> None:
    first = await db.run_postgres(_pid)
    await db.dispose()
    for _ in range(100):  # the server ends the backend a moment after the client leaves
        async with db.read() as tx:
            alive = await tx.exec_driver_sql(
                f"SELECT count(*) FROM pg_stat_activity WHERE pid = {first}"
            )
            if alive.scalar() == 0:
                break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the plain connection was still open after dispose")
    assert await db.run_postgres(_pid) != first  # as the engine, usable again after dispose


async def test_sqlite_has_no_plain_postgres_connections(tmp_path: Any) -> None:
    sqlite = Database(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with pytest.raises(RuntimeError, match="PostgreSQL"):
            await sqlite.run_postgres(_pid)
    finally:
        await sqlite.dispose()
