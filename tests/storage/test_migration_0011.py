"""Migration 0011: an app's one test list becomes lists on its tenant's non-production
stages (and for mail naming no stage); the downgrade gives each app one list back."""

from __future__ import annotations

import json
from typing import Any

import httpx
from alembic import command
from sqlalchemy import text

from mailgate.services.context import Context
from mailgate.storage import migrate
from tests.config.helpers import new_tenant
from tests.conftest import ADMIN

T = "/api/v1/tenants/acme"
REVISION = "0011"


async def _migrate(ctx: Context, action: str, revision: str) -> None:
    def run(sync_conn: Any) -> None:
        getattr(command, action)(migrate.alembic_config(sync_conn), revision)

    async with ctx.db.engine.begin() as conn:
        await conn.run_sync(run)


async def _rows(ctx: Context, sql: str) -> list[Any]:
    async with ctx.db.engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


def _list(value: Any) -> list[str]:
    return list(json.loads(value) if isinstance(value, str) else value)


async def test_the_revision_follows_0010() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_revision(REVISION).down_revision == "0010"


async def test_up_keeps_lists_off_production_and_down_gives_one_back(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    await new_tenant(client)
    for name in ("billing", "crm", "idle"):
        r = await client.post(f"{T}/apps", json={"name": name}, headers=ADMIN)
        assert r.status_code == 201, r.text
    r = await client.post(f"{T}/stages", json={"name": "staging"}, headers=ADMIN)
    assert r.status_code == 201, r.text

    await _migrate(ctx, "downgrade", "0010")
    async with ctx.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE apps SET test_list = :a, test_list_active = :on WHERE name = :n"),
            [
                {"a": json.dumps(["qa@test.example"]), "on": True, "n": "billing"},
                {"a": json.dumps(["later@test.example"]), "on": False, "n": "crm"},
            ],
        )
    await _migrate(ctx, "upgrade", "head")
    assert await migrate.current_revision(ctx.db) == migrate.head_revision()

    billing = (await client.get(f"{T}/apps/billing", headers=ADMIN)).json()
    on = {"addresses": ["qa@test.example"], "users": [], "active": True}
    assert billing["test_list"] == on
    assert billing["test_lists"] == {"development": on, "staging": on, "test": on}
    crm = (await client.get(f"{T}/apps/crm", headers=ADMIN)).json()
    assert crm["test_lists"]["development"]["addresses"] == ["later@test.example"]
    assert crm["test_lists"]["development"]["active"] is False
    idle = (await client.get(f"{T}/apps/idle", headers=ADMIN)).json()
    assert idle["test_lists"] == {}
    columns = await _rows(ctx, "SELECT description FROM email_accounts")
    assert columns == []  # the column exists (no account yet)

    # After the upgrade: crm gets an active list on one stage only, naming a user.
    r = await client.post(
        f"{T}/users",
        json={"email": "dana@acme.example", "password": "correct horse battery", "role": "viewer"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    r = await client.put(
        f"{T}/apps/crm/stages/test/test-list",
        json={"addresses": ["qa@test.example"], "users": ["dana@acme.example"], "active": True},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text

    await _migrate(ctx, "downgrade", "0010")
    rows = await _rows(ctx, "SELECT name, test_list, test_list_active FROM apps ORDER BY name")
    got = {name: (_list(listed), bool(active)) for name, listed, active in rows}
    assert got == {
        "billing": (["qa@test.example"], True),
        # The active list wins over the inactive one for no stage; users become addresses.
        "crm": (["qa@test.example", "dana@acme.example"], True),
        "idle": ([], False),
    }
    await _migrate(ctx, "upgrade", "head")
    assert await migrate.current_revision(ctx.db) == migrate.head_revision()
