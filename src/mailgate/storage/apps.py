"""Apps and their email test lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.domain.model import App, TestList
from mailgate.errors import NotFound
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.tables import apps


def _app(row: Any) -> App:
    return App(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        test_list=TestList(tuple(row.test_list or ()), bool(row.test_list_active)),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


async def list_apps(tx: Tx, tenant_id: str) -> list[App]:
    rows = await tx.execute(select(apps).where(apps.c.tenant_id == tenant_id).order_by(apps.c.id))
    return [_app(r) for r in rows]


async def find_app(tx: Tx, tenant_id: str, name: str) -> App | None:
    row = (
        await tx.execute(select(apps).where(apps.c.tenant_id == tenant_id, apps.c.name == name))
    ).first()
    return _app(row) if row else None


async def get_app(tx: Tx, tenant_id: str, name: str) -> App:
    app = await find_app(tx, tenant_id, name)
    if app is None:
        raise NotFound(f"No app {name!r}.")
    return app


async def get_app_by_id(tx: Tx, tenant_id: str, app_id: str) -> App:
    row = (
        await tx.execute(select(apps).where(apps.c.tenant_id == tenant_id, apps.c.id == app_id))
    ).first()
    if row is None:
        raise NotFound("No such app.")
    return _app(row)


async def create_app(tx: Tx, tenant_id: str, name: str) -> App:
    now = utcnow()
    app_id = new_id()
    async with unique_guard("name", f"An app named {name!r} already exists."):
        await tx.execute(
            insert(apps).values(
                id=app_id,
                tenant_id=tenant_id,
                name=name,
                test_list=[],
                test_list_active=False,
                created_at=now,
                updated_at=now,
            )
        )
    return App(app_id, tenant_id, name, TestList(), now, now)


async def rename_app(tx: Tx, app: App, name: str) -> App:
    async with unique_guard("name", f"An app named {name!r} already exists."):
        await tx.execute(
            update(apps).where(apps.c.id == app.id).values(name=name, updated_at=utcnow())
        )
    return await get_app(tx, app.tenant_id, name)


async def set_test_list(tx: Tx, app: App, test_list: TestList) -> App:
    await tx.execute(
        update(apps)
        .where(apps.c.id == app.id)
        .values(
            test_list=list(test_list.addresses),
            test_list_active=test_list.active,
            updated_at=utcnow(),
        )
    )
    return await get_app(tx, app.tenant_id, app.name)


async def delete_app(tx: Tx, app: App) -> None:
    await tx.execute(delete(apps).where(apps.c.id == app.id))
