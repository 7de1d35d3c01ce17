"""Database engines for SQLite and PostgreSQL from the same code.

SQLite runs in WAL mode with foreign keys on and a busy timeout; PostgreSQL runs through
psycopg 3. Everything above storage sees a :class:`Database` and opaque transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mailgate.errors import ConfigurationError

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Set while the current task is inside a SQLite write transaction (no re-locking).
_holds_write_lock: ContextVar[bool] = ContextVar("mailgate_sqlite_writer", default=False)


def normalise_url(url: str) -> str:
    """Pick the async driver for a plain ``sqlite://`` or ``postgresql://`` URL."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level so that SQLAlchemy's "BEGIN" is the one we emit
    # ourselves (BEGIN IMMEDIATE for writers, see Database.transaction).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Readers take no write lock; writers take it up front (no lock upgrade deadlocks).
    if conn.get_execution_options().get("mailgate_read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One database: an async engine plus transaction helpers."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        elif self.dialect == "postgresql":
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            kwargs["pool_pre_ping"] = True
        else:
            raise ConfigurationError(
                f"Unsupported database {self.dialect!r}: use sqlite or postgresql "
                "(MAILGATE_DATABASE_URL)."
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            self._write_lock = asyncio.Lock()

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed on success and rolled back on error.

        On SQLite it starts with ``BEGIN IMMEDIATE`` so writers queue on the database lock
        instead of failing with "database is locked" when upgrading a read lock; and the
        writers of one process queue on an asyncio lock first, because SQLite's own busy
        handler waits by sleeping (a millisecond and more per try), which would stall a
        process whose claim and flush transactions take turns hundreds of times a second.
        """
        if self._write_lock is None or _holds_write_lock.get():
            async with self._begin() as conn:
                yield conn
            return
        async with self._write_lock:
            token = _holds_write_lock.set(True)
            try:
                async with self._begin() as conn:
                    yield conn
            finally:
                _holds_write_lock.reset(token)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            if "unable to open database" in str(exc) or "could not connect" in str(exc):
                raise ConfigurationError(
                    f"Cannot open the database at {self.safe_url}: {exc.orig}"
                ) from exc
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (on SQLite it takes no write lock)."""
        async with self.engine.connect() as raw:
            conn = await raw.execution_options(mailgate_read_only=True)
            async with conn.begin():
                yield conn

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
