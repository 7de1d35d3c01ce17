"""Running Alembic migrations from Mailgate (``mailgate db upgrade``, ``serve`` on SQLite)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text

from mailgate.storage.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

_SCRIPTS = Path(__file__).parent / "migrations"
_REVISION = re.compile(
    r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([\w.-]+|None)['\"]?", re.MULTILINE
)


def alembic_config(connection: Any | None = None) -> Config:
    """An Alembic config pointing at Mailgate's migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str | None:
    """The newest migration Mailgate ships.

    Read from the migration files' ``revision``/``down_revision`` lines rather than through
    Alembic, so that starting a worker does not import Alembic (a test checks that both agree).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((_SCRIPTS / "versions").glob("*.py")):
        found = dict(_REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision", "None"))
    heads = revisions - parents
    if len(heads) > 1:
        raise RuntimeError(f"migrations have several heads: {sorted(heads)}")
    return heads.pop() if heads else None


async def current_revision(db: Database) -> str | None:
    """The migration the database is at (None for an empty database)."""

    def _current(sync_conn: Any) -> str | None:
        if not inspect(sync_conn).has_table("alembic_version"):
            return None
        value = sync_conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return None if value is None else str(value)

    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""

    from alembic import command

    def _upgrade(sync_conn: Any) -> None:
        command.upgrade(alembic_config(sync_conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade)
