"""Apps and their email test lists (one per app and stage)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.domain.model import NO_STAGE, App, TestList
from mailgate.errors import NotFound
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.tables import apps, test_lists


def _app(row: Any, lists: dict[str, TestList]) -> App:
    return App(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        test_list=lists.get(NO_STAGE, TestList()),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
        stage_lists={k: v for k, v in sorted(lists.items()) if k != NO_STAGE},
    )


def _test_list(row: Any) -> TestList:
    return TestList(
        addresses=tuple(row.addresses or ()),
        active=bool(row.active),
        users=tuple(row.users or ()),
    )


async def _lists(tx: Tx, app_ids: Iterable[str]) -> dict[str, dict[str, TestList]]:
    ids = list(app_ids)
    found: dict[str, dict[str, TestList]] = defaultdict(dict)
    if not ids:
        return found
    rows = await tx.execute(select(test_lists).where(test_lists.c.app_id.in_(ids)))
    for row in rows:
        found[row.app_id][row.stage] = _test_list(row)
    return found


async def _with_lists(tx: Tx, rows: Iterable[Any]) -> list[App]:
    rows = list(rows)
    lists = await _lists(tx, (r.id for r in rows))
    return [_app(r, lists.get(r.id, {})) for r in rows]


async def list_apps(tx: Tx, tenant_id: str) -> list[App]:
    rows = await tx.execute(select(apps).where(apps.c.tenant_id == tenant_id).order_by(apps.c.id))
    return await _with_lists(tx, rows)


async def find_app(tx: Tx, tenant_id: str, name: str) -> App | None:
    row = (
        await tx.execute(select(apps).where(apps.c.tenant_id == tenant_id, apps.c.name == name))
    ).first()
    return (await _with_lists(tx, [row]))[0] if row else None


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
    return (await _with_lists(tx, [row]))[0]


async def create_app(tx: Tx, tenant_id: str, name: str) -> App:
    now = utcnow()
    app_id = new_id()
    async with unique_guard("name", f"An app named {name!r} already exists."):
        await tx.execute(
            insert(apps).values(
                id=app_id, tenant_id=tenant_id, name=name, created_at=now, updated_at=now
            )
        )
    return App(app_id, tenant_id, name, TestList(), now, now)


async def rename_app(tx: Tx, app: App, name: str) -> App:
    async with unique_guard("name", f"An app named {name!r} already exists."):
        await tx.execute(
            update(apps).where(apps.c.id == app.id).values(name=name, updated_at=utcnow())
        )
    return await get_app(tx, app.tenant_id, name)


async def set_test_lists(tx: Tx, app: App, lists: dict[str, TestList]) -> App:
    """Replace the lists of the stages named in ``lists`` ("" is mail naming no stage); an
    empty, inactive list is stored as no row."""
    now = utcnow()
    stages = list(lists)
    await tx.execute(
        delete(test_lists).where(test_lists.c.app_id == app.id, test_lists.c.stage.in_(stages))
    )
    rows = [
        {
            "app_id": app.id,
            "stage": stage,
            "tenant_id": app.tenant_id,
            "addresses": list(test_list.addresses),
            "users": list(test_list.users),
            "active": test_list.active,
            "updated_at": now,
        }
        for stage, test_list in lists.items()
        if test_list.active or not test_list.empty
    ]
    if rows:
        await tx.execute(insert(test_lists), rows)
    await tx.execute(update(apps).where(apps.c.id == app.id).values(updated_at=now))
    return await get_app(tx, app.tenant_id, app.name)


async def delete_app(tx: Tx, app: App) -> None:
    await tx.execute(delete(apps).where(apps.c.id == app.id))
