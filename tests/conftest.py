"""Fixtures shared by every test: databases (SQLite and PostgreSQL), contexts, API clients."""

from __future__ import annotations

import logging
import os
import secrets
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
    import psycopg

    schema = f"mgtest_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(_psycopg_dsn(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(_psycopg_dsn(base), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


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
