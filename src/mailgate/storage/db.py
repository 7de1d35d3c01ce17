"""Database engines for SQLite and PostgreSQL from the same code.

SQLite runs in WAL mode with foreign keys on and a busy timeout; PostgreSQL runs through
psycopg 3. Everything above storage sees a :class:`Database` and opaque transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mailgate.errors import ConfigurationError
from mailgate.storage.files import ensure_private_file
from mailgate.storage.pg_direct import Conn, DirectPostgres

log = logging.getLogger("mailgate.storage")

SQLITE_BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")

#: Set while the current task is inside a SQLite write transaction (no re-locking).
_holds_write_lock: ContextVar[bool] = ContextVar("mailgate_sqlite_writer", default=False)


def normalise_url(url: str) -> str:
    """Pick the async driver for a plain ``sqlite://`` or ``postgresql://`` URL."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_timeout_ms: int) -> None:
    # Autocommit at the driver level so that SQLAlchemy's "BEGIN" is the one we emit
    # ourselves (BEGIN IMMEDIATE for writers, see Database.transaction).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Readers take no write lock; writers take it up front (no lock upgrade deadlocks).
    if conn.get_execution_options().get("mailgate_read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class HostWriteLock:
    """An exclusive ``flock`` on a file beside the SQLite database, taken by every writer.

    SQLite lets one writer in at a time and makes the others wait in its busy handler, which
    sleeps and retries (1 ms, 2 ms, 5 ms … up to 100 ms per try). Several worker processes
    taking turns hundreds of times a second then spend most of their time asleep. With this
    lock the kernel wakes the next writer the moment the lock is released, and ``BEGIN
    IMMEDIATE`` finds the database free; the busy handler stays as the fallback for writers
    that are not Mailgate.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._unusable = False

    def _open(self) -> int | None:
        # ``flock`` needs no write access and the file stays empty; it is private like the
        # database beside it (whoever can write the database can open it). When it cannot
        # be opened, SQLite's busy handler alone serialises writers: slower under
        # contention, never wrong.
        if self._fd is None and not self._unusable:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                self._unusable = True
                log.warning(
                    "cannot use the SQLite writer lock %s (%s); continuing without", self.path, exc
                )
        return self._fd

    async def acquire(self) -> None:
        fd = self._open()
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread may still get the lock after we gave up: give it back then.
            waiting.add_done_callback(self._release_if_taken)
            raise

    def _release_if_taken(self, waiting: asyncio.Future[None]) -> None:
        if not waiting.cancelled() and waiting.exception() is None:
            self.release()

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DirectSqlite:
    """A plain ``sqlite3`` connection used on the event loop's thread, for the worker's
    hottest transactions (claiming, loading, recording outcomes).

    Through SQLAlchemy and aiosqlite every statement crosses between the event loop and the
    driver's thread several times (cursor, execute, fetch, close); under load each crossing
    also waits for the interpreter lock, which the busy loop gives up only every few
    milliseconds. A worker's batch is a few statements on a local file, shorter than one
    such crossing, so it runs here, in place. It never waits on the database lock in place:
    the connection's busy timeout is zero, and a transaction that finds the database locked
    (by a writer that is not Mailgate; Mailgate's writers queue on the host lock first) is
    rolled back and tried again after an asynchronous pause, for as long as the busy timeout
    of the engine allows. The connection has the engine's other pragmas.
    """

    def __init__(self, path: str, *, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            _sqlite_pragmas(conn, None, busy_timeout_ms=0)
            self._conn = conn
        return self._conn

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        conn = self._connection()
        conn.execute(begin)
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """``fn(connection)`` in one transaction (``BEGIN IMMEDIATE`` when ``write``),
        committed when it returns and rolled back when it raises; run again from the start
        while the database is locked (``fn`` must only use the connection)."""
        begin = "BEGIN IMMEDIATE" if write else "BEGIN"
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._busy_timeout_ms / 1000
        pause = 0.001
        while True:
            try:
                return self._transaction(fn, begin)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or loop.time() + pause > give_up:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


class Database:
    """One database: an async engine plus transaction helpers."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 10,
        busy_timeout_ms: int | None = None,
    ) -> None:
        self.url = normalise_url(url)
        #: How long a SQLite writer waits for a lock held by another connection before the
        #: statement fails with "database is locked".
        self.busy_timeout_ms = (
            SQLITE_BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
        )
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        self._host_lock: HostWriteLock | None = None
        self._sqlite_path: str | None = None
        self._direct: DirectSqlite | None = None
        self._direct_pg: DirectPostgres | None = None
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                self._sqlite_path = parsed.database
                # Created 0600 before SQLite opens it: its WAL and shared-memory files
                # take the database file's mode, so mail and sealed secrets stay private.
                ensure_private_file(Path(parsed.database))
                self._host_lock = HostWriteLock(Path(parsed.database + ".writer-lock"))
            kwargs["connect_args"] = {"timeout": self.busy_timeout_ms / 1000}
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
            pragmas = partial(_sqlite_pragmas, busy_timeout_ms=self.busy_timeout_ms)
            event.listen(self.engine.sync_engine, "connect", pragmas)
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
        writers of one process queue on an asyncio lock first, and the processes of one host
        on a :class:`HostWriteLock`, because SQLite's own busy handler waits by sleeping (a
        millisecond and more per try), which would stall processes whose claim and flush
        transactions take turns hundreds of times a second.
        """
        async with self._writer(), self._begin() as conn:
            yield conn

    @asynccontextmanager
    async def _writer(self) -> AsyncIterator[None]:
        """The locks a SQLite writer queues on (see :meth:`transaction`); none elsewhere."""
        if self._write_lock is None or _holds_write_lock.get():
            yield
            return
        async with self._write_lock:
            token = _holds_write_lock.set(True)
            host = self._host_lock
            if host is not None:
                await host.acquire()
            try:
                yield
            finally:
                if host is not None:
                    host.release()
                _holds_write_lock.reset(token)

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite database file, when the database is one."""
        return self._sqlite_path

    @property
    def direct(self) -> bool:
        """Whether :meth:`run_direct` is available (a SQLite database in a file)."""
        return self._sqlite_path is not None

    async def run_direct(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """``fn`` in one transaction of a :class:`DirectSqlite` connection; writers queue on
        the same locks as :meth:`transaction`. Only where :attr:`direct` is true."""
        if self._sqlite_path is None:
            raise RuntimeError("direct transactions need a SQLite database in a file")
        if self._direct is None:
            self._direct = DirectSqlite(self._sqlite_path, busy_timeout_ms=self.busy_timeout_ms)
        if not write:
            return await self._direct.run(fn, write=False)
        async with self._writer():
            return await self._direct.run(fn, write=True)

    @property
    def dsn(self) -> str:
        """The connection string for psycopg itself (PostgreSQL), password included."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def run_postgres(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``await fn(connection)`` on a plain psycopg connection in autocommit mode (see
        :mod:`mailgate.storage.pg_direct`); ``fn`` writes its own BEGIN and COMMIT. Only on
        PostgreSQL."""
        if not self.is_postgres:
            raise RuntimeError("plain psycopg connections are for PostgreSQL")
        if self._direct_pg is None:
            self._direct_pg = DirectPostgres(self.dsn)
        return await self._direct_pg.run(fn)

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
            # A read: on SQLite a plain connect would begin IMMEDIATE and wait out the busy
            # timeout behind any writer, stalling the readiness probe that should report it.
            async with self.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._direct_pg is not None:
            await self._direct_pg.close()
            self._direct_pg = None
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if self._host_lock is not None:
            with contextlib.suppress(OSError):
                self._host_lock.close()
