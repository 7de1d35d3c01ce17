"""SQLite writers of several processes queue on one host lock (kernel wake-ups, no sleeping)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from mailgate.storage.db import Database, HostWriteLock


async def test_writers_of_two_databases_take_turns(tmp_path: Path) -> None:
    """Two Database objects open the lock file separately, exactly like two processes."""
    url = f"sqlite:///{tmp_path / 'mailgate.db'}"
    first, second = Database(url), Database(url)
    order: list[str] = []
    inside = asyncio.Event()
    try:
        async with first.transaction() as tx:
            await tx.exec_driver_sql("CREATE TABLE t (n INTEGER)")

        async def hold() -> None:
            async with first.transaction() as tx:
                await tx.exec_driver_sql("INSERT INTO t VALUES (1)")
                inside.set()
                await asyncio.sleep(0.2)
                order.append("first done")

        async def wait_turn() -> None:
            await inside.wait()
            async with second.transaction() as tx:
                order.append("second in")
                await tx.exec_driver_sql("INSERT INTO t VALUES (2)")

        await asyncio.wait_for(asyncio.gather(hold(), wait_turn()), timeout=10)
        assert order == ["first done", "second in"]
        assert (tmp_path / "mailgate.db.writer-lock").exists()
        async with second.read() as tx:
            rows = (await tx.exec_driver_sql("SELECT n FROM t ORDER BY n")).all()
        assert [r[0] for r in rows] == [1, 2]
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_cancelled_waiter_does_not_keep_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.writer-lock"
    holder, waiter, later = HostWriteLock(path), HostWriteLock(path), HostWriteLock(path)
    try:
        await holder.acquire()
        waiting = asyncio.create_task(waiter.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        holder.release()
        # The waiter's thread gets the lock after the cancel and must hand it back at once.
        await asyncio.wait_for(later.acquire(), timeout=5)
        later.release()
    finally:
        for lock in (holder, waiter, later):
            lock.close()


async def test_the_lock_file_is_empty_and_private(tmp_path: Path) -> None:
    """flock needs no write access, and the file is as private as the database beside it."""
    lock = HostWriteLock(tmp_path / "db.writer-lock")
    try:
        await lock.acquire()
        lock.release()
    finally:
        lock.close()
    info = (tmp_path / "db.writer-lock").stat()
    assert info.st_size == 0
    assert info.st_mode & 0o077 == 0  # nobody but the owner
    assert info.st_mode & 0o400 == 0o400


async def test_writes_go_on_when_the_lock_file_cannot_be_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "mailgate.db"
    (tmp_path / "mailgate.db.writer-lock").symlink_to(tmp_path / "missing" / "lock")
    db = Database(f"sqlite:///{database}")
    try:
        with caplog.at_level(logging.WARNING, logger="mailgate.storage"):
            for n in range(3):
                async with db.transaction() as tx:
                    if n == 0:
                        await tx.exec_driver_sql("CREATE TABLE t (n INTEGER)")
                    await tx.exec_driver_sql("INSERT INTO t VALUES (?)", (n,))
        async with db.read() as tx:
            count = (await tx.exec_driver_sql("SELECT count(*) FROM t")).scalar_one()
        assert count == 3
        warnings = [r for r in caplog.records if "writer lock" in r.getMessage()]
        assert len(warnings) == 1  # said once, not on every write
    finally:
        await db.dispose()
