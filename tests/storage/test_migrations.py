"""Migrations run on SQLite and PostgreSQL and produce exactly the schema of tables.py."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mailgate.services.context import Context
from mailgate.storage import migrate
from mailgate.storage.tables import metadata


async def test_upgraded_schema_matches_the_model(ctx: Context) -> None:
    assert await migrate.current_revision(ctx.db) == migrate.head_revision()

    def diff(sync_conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(sync_conn), metadata))

    async with ctx.db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_upgrade_is_idempotent(ctx: Context) -> None:
    await migrate.upgrade(ctx.db)
    assert await migrate.current_revision(ctx.db) == migrate.head_revision()


def test_head_read_from_the_files_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head_revision() == script.get_current_head()
    assert migrate.head_revision() is not None


async def test_worker_heartbeats_migrate_down_and_up_again(ctx: Context) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def tables(sync_conn: Any) -> set[str]:
        return set(inspect(sync_conn).get_table_names())

    def downgrade(sync_conn: Any) -> None:
        command.downgrade(migrate.alembic_config(sync_conn), "0010")

    async with ctx.db.engine.begin() as conn:
        assert "worker_heartbeats" in await conn.run_sync(tables)
        await conn.run_sync(downgrade)
    async with ctx.db.engine.connect() as conn:
        assert "worker_heartbeats" not in await conn.run_sync(tables)
    assert await migrate.current_revision(ctx.db) == "0010"
    await migrate.upgrade(ctx.db)
    assert await migrate.current_revision(ctx.db) == migrate.head_revision()
    async with ctx.db.engine.connect() as conn:
        assert "worker_heartbeats" in await conn.run_sync(tables)
