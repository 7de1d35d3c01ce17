"""Apps and their email test lists."""

from __future__ import annotations

import re

from mailgate.domain.model import App, TestList
from mailgate.errors import ValidationFailed
from mailgate.services.accounts import check_address
from mailgate.services.context import Caller, Context
from mailgate.storage import apps, audit

_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_TEST_LIST = 100


def _check_name(name: str) -> None:
    if not _APP_NAME.match(name):
        raise ValidationFailed.field(
            "name", "use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


async def list_apps(ctx: Context, caller: Caller) -> list[App]:
    async with ctx.db.read() as tx:
        return await apps.list_apps(tx, caller.tenant_id)


async def get_app(ctx: Context, caller: Caller, name: str) -> App:
    async with ctx.db.read() as tx:
        return await apps.get_app(tx, caller.tenant_id, name)


async def create_app(ctx: Context, caller: Caller, name: str) -> App:
    _check_name(name)
    async with ctx.db.transaction() as tx:
        app = await apps.create_app(tx, caller.tenant_id, name)
        await audit.record(
            tx,
            tenant_id=caller.tenant_id,
            actor=caller.actor,
            action="app.create",
            object_type="app",
            object_id=app.id,
            object_name=name,
            changes=["name"],
        )
    return app


async def rename_app(ctx: Context, caller: Caller, name: str, new_name: str) -> App:
    _check_name(new_name)
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, name)
        renamed = await apps.rename_app(tx, app, new_name)
        await audit.record(
            tx,
            tenant_id=caller.tenant_id,
            actor=caller.actor,
            action="app.update",
            object_type="app",
            object_id=app.id,
            object_name=new_name,
            changes=["name"],
        )
    return renamed


async def delete_app(ctx: Context, caller: Caller, name: str) -> None:
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, name)
        await apps.delete_app(tx, app)
        await audit.record(
            tx,
            tenant_id=caller.tenant_id,
            actor=caller.actor,
            action="app.delete",
            object_type="app",
            object_id=app.id,
            object_name=name,
        )


async def set_test_list(
    ctx: Context, caller: Caller, name: str, *, addresses: list[str], active: bool
) -> App:
    """Replace an app's test list. An active list must name at least one address."""
    if len(addresses) > MAX_TEST_LIST:
        raise ValidationFailed.field("addresses", f"at most {MAX_TEST_LIST} addresses")
    clean = [check_address(a, f"addresses[{i}]") for i, a in enumerate(addresses)]
    if active and not clean:
        raise ValidationFailed.field("addresses", "an active test list needs at least one address")
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, name)
        updated = await apps.set_test_list(tx, app, TestList(tuple(clean), active))
        await audit.record(
            tx,
            tenant_id=caller.tenant_id,
            actor=caller.actor,
            action="app.test_list",
            object_type="app",
            object_id=app.id,
            object_name=name,
            changes=["addresses", "active"],
        )
    return updated
