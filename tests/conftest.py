"""Fixtures shared by every test: databases (SQLite and PostgreSQL), contexts, API clients."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from mailgate.services.boot import open_context
from mailgate.services.context import Context
from mailgate.settings import Settings
from mailgate.storage.secretbox import generate_key

PG_ENV = "MAILGATE_TEST_DATABASE_URL"
ADMIN_TOKEN = "mg_test_admin_" + secrets.token_hex(8)


def _pg_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def keep_root_logging() -> Iterator[None]:
    """For tests that run a command, which configures the root logger as a process would: put
    the root logger's handlers and level back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mailgate.db'}"
        return
    base = _pg_url()
    if base is None:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (make test sets it when the server answers)")
    schema = f"mgtest_{os.getpid()}_{secrets.token_hex(4)}"
    _pg_run(base, f'CREATE SCHEMA "{schema}"')
    url = _schema_url(base, schema)
    _SCHEMAS[url] = schema
    yield url
    del _SCHEMAS[url]
    _pg_run(base, f'DROP SCHEMA "{schema}" CASCADE')


def _pg_run(base: str, sql: str) -> None:
    """Run ``sql`` (one or more statements) on the test PostgreSQL, committed."""
    import psycopg

    with psycopg.connect(_psycopg_dsn(base), autocommit=True) as conn:
        conn.execute(sql.encode())


def _schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


# Migrated databases, copied ----------------------------------------------------------------
#
# Running every migration for each test costs 0.1-0.3 s; a test that only needs the current
# schema gets a copy of one migrated in this process instead: the SQLite file, or the
# PostgreSQL schema as pg_dump prints it. The migration tests keep ``database_url``, which
# stays empty.

_SCHEMAS: dict[str, str] = {}  # PostgreSQL test URL -> its schema


class _Templates:
    """This process's migrated databases, made on first use."""

    sqlite: Path | None = None
    #: (the template schema's name, the SQL that rebuilds it); None without pg_dump.
    postgresql: tuple[str, str] | None = None
    postgresql_made = False


async def _migrated(settings: Settings) -> None:
    context = await open_context(settings, auto_upgrade=True)
    await context.db.dispose()


async def _sqlite_template(tmp_root: Path) -> Path:
    if _Templates.sqlite is not None:
        return _Templates.sqlite
    path = tmp_root / "template.db"
    await _migrated(
        Settings(
            database_url=f"sqlite+aiosqlite:///{path}",
            data_dir=tmp_root,
            secret_keys=[generate_key()],
        )
    )
    with sqlite3.connect(path) as conn:  # everything in the main file, nothing in a -wal
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _Templates.sqlite = path
    return path


async def _postgres_template(base: str, tmp_root: Path) -> tuple[str, str] | None:
    """(schema, the SQL that rebuilds it) for a migrated schema, or None without pg_dump."""
    if _Templates.postgresql_made:
        return _Templates.postgresql
    _Templates.postgresql_made = True
    dump = shutil.which("pg_dump")
    if dump is None:
        return None
    schema = f"mgtemplate_{os.getpid()}_{secrets.token_hex(4)}"
    _pg_run(base, f'CREATE SCHEMA "{schema}"')
    try:
        await _migrated(
            Settings(
                database_url=_schema_url(base, schema),
                data_dir=tmp_root,
                secret_keys=[generate_key()],
            )
        )
        printed = subprocess.run(
            [
                dump,
                "--schema",
                schema,
                "--inserts",
                "--no-owner",
                "--no-privileges",
                "--dbname",
                _psycopg_dsn(base).split("?")[0],
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        # psql meta-commands (\restrict) and the schema itself are not for us.
        script = "\n".join(
            line
            for line in printed.splitlines()
            if not line.startswith("\\") and not line.startswith("CREATE SCHEMA")
        )
    finally:
        _pg_run(base, f'DROP SCHEMA "{schema}" CASCADE')
    _Templates.postgresql = (schema, script)
    return _Templates.postgresql


async def _copy_migrated(settings: Settings) -> None:
    """Fill the test's empty database with a copy of a migrated one (see above)."""
    url = settings.database_url
    tmp_root = settings.data_dir.parent / f"templates-{os.getpid()}"
    tmp_root.mkdir(exist_ok=True)
    if url.startswith("sqlite"):
        target = Path(url.split("///", 1)[1])
        if target.exists():
            return
        template = await _sqlite_template(tmp_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, template.open("rb") as source:
            shutil.copyfileobj(source, out)
        return
    schema = _SCHEMAS.get(url)
    base = _pg_url()
    if schema is None or base is None:
        return
    found = await _postgres_template(base, tmp_root)
    if found is None:
        return
    template, script = found
    _pg_run(base, re.sub(rf"\b{template}\b", schema, script))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        secret_keys=[generate_key()],
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[Context]:
    await _copy_migrated(settings)
    context = await open_context(settings, auto_upgrade=True)
    try:
        yield context
    finally:
        await context.db.dispose()


@pytest.fixture
async def client(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    from mailgate.web.app import create_app

    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://mailgate.test") as c:
        yield c


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
