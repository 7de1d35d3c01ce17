"""Direct SQLite transactions: committed or rolled back whole, never blocking the loop on a
locked database."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from mailgate.storage.db import Database


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'mailgate.db'}")
    async with database.transaction() as tx:
        await tx.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    yield database  # type: ignore[misc]
    await database.dispose()


async def test_a_write_commits_and_a_failure_rolls_back(db: Database) -> None:
    def insert(conn: sqlite3.Connection) -> int:
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        return _count(conn)

    def fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (3)")
        raise ValueError("no")

    assert db.direct
    assert await db.run_direct(insert, write=True) == 2
    with pytest.raises(ValueError, match="no"):
        await db.run_direct(fail, write=True)
    assert await db.run_direct(_count, write=False) == 2
    async with db.read() as tx:  # the engine's connection sees the same rows
        assert (await tx.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 2


async def test_a_locked_database_is_waited_for_without_blocking_the_loop(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "mailgate.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # a writer that is not Mailgate
        other.execute("INSERT INTO t VALUES (7)")
        writing = asyncio.create_task(
            db.run_direct(lambda conn: conn.execute("INSERT INTO t VALUES (8)"), write=True)
        )
        ticks = 0
        while ticks < 20:  # the loop keeps running while the write waits
            await asyncio.sleep(0.005)
            ticks += 1
        assert not writing.done()
        other.execute("COMMIT")
        await asyncio.wait_for(writing, timeout=10)
    finally:
        other.close()
    assert await db.run_direct(_count, write=False) == 2


async def test_the_wait_ends_with_the_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'mailgate.db'}", busy_timeout_ms=100)
    async with db.transaction() as tx:
        await tx.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    other = sqlite3.connect(tmp_path / "mailgate.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await db.run_direct(lambda conn: conn.execute("INSERT INTO t VALUES (1)"), write=True)
    finally:
        other.close()
        await db.dispose()


async def test_postgres_has_no_direct_transactions() -> None:
    db = Database("postgresql+psycopg://user@127.0.0.1:1/none")
    assert not db.direct
    with pytest.raises(RuntimeError, match="SQLite"):
        await db.run_direct(_count, write=False)
    await db.dispose()
