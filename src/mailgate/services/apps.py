"""Apps and their email test lists."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence

from mailgate.domain.model import NO_STAGE, PRODUCTION_STAGE, App, Stage, TestList, User
from mailgate.domain.routing import (
    Recipients,
    RouteError,
    Routing,
    apply_test_list,
    resolve_test_list,
)
from mailgate.errors import NotFound, ValidationFailed
from mailgate.services import audit_trail
from mailgate.services.accounts import check_address
from mailgate.services.context import Caller, Context
from mailgate.storage import apps, members, tenants
from mailgate.storage.base import Tx

log = logging.getLogger("mailgate.test_lists")

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
        await audit_trail.record(tx, caller, "app.create", "app", app.id, name, ["name"])
    return app


async def rename_app(ctx: Context, caller: Caller, name: str, new_name: str) -> App:
    _check_name(new_name)
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, name)
        renamed = await apps.rename_app(tx, app, new_name)
        await audit_trail.record(tx, caller, "app.update", "app", app.id, new_name, ["name"])
    return renamed


async def delete_app(ctx: Context, caller: Caller, name: str) -> None:
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, name)
        await apps.delete_app(tx, app)
        await audit_trail.record(tx, caller, "app.delete", "app", app.id, name)


def _user_ids(entries: Sequence[object], users: Sequence[User], field: str) -> list[str]:
    """The ids of the tenant users named by id or e-mail address; a 422 names the entry
    (``users[2]``) that names nobody in the tenant."""
    by_id = {u.id: u.id for u in users}
    by_email = {u.email.lower(): u.id for u in users}
    ids: list[str] = []
    for i, entry in enumerate(entries):
        place = f"{field}[{i}]"
        key = entry
        if isinstance(entry, Mapping):
            key = entry.get("id") or entry.get("email")
        if not isinstance(key, str) or not key.strip():
            raise ValidationFailed.field(place, "name a user by id or e-mail address")
        key = key.strip()
        found = by_id.get(key) or by_email.get(key.lower())
        if found is None:
            raise ValidationFailed.field(
                place, f"no user {key!r} in this tenant (name a user by id or e-mail address)"
            )
        if found not in ids:
            ids.append(found)
    return ids


def check_test_list(
    addresses: Sequence[str], user_entries: Sequence[object], active: bool, users: Sequence[User]
) -> TestList:
    """A test list as stored, or a 422 naming the field (``addresses[1]``, ``users[0]``)."""
    if len(addresses) + len(user_entries) > MAX_TEST_LIST:
        raise ValidationFailed.field(
            "addresses", f"at most {MAX_TEST_LIST} addresses and users together"
        )
    clean = [check_address(a, f"addresses[{i}]") for i, a in enumerate(addresses)]
    ids = _user_ids(user_entries, users, "users")
    if active and not clean and not ids:
        raise ValidationFailed.field(
            "addresses", "an active test list needs at least one address or user"
        )
    return TestList(tuple(clean), active, tuple(ids))


def fan_out_stages(stages: Sequence[Stage]) -> list[str]:
    """Where the app-level list goes: mail naming no stage and every stage but production."""
    return [NO_STAGE, *(s.name for s in stages if s.name != PRODUCTION_STAGE)]


async def set_test_list(
    ctx: Context,
    caller: Caller,
    name: str,
    *,
    addresses: list[str],
    active: bool,
    users: Sequence[object] = (),
    stage: str | None = None,
) -> App:
    """Replace an app's test list on ``stage`` ("": only the list for mail that names no
    stage). Without a stage (None: the app-level list of the API's first version) the list
    is the one for mail that names no stage and for every stage except ``production``. An
    active list must name an address or a user."""
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, name)
        tenant_users = await members.list_users(tx, caller.tenant_id)
        test_list = check_test_list(addresses, users, active, tenant_users)
        if stage is None:
            keys = fan_out_stages(await tenants.list_stages(tx, caller.tenant_id))
        elif stage == NO_STAGE:
            keys = [NO_STAGE]
        else:
            if await tenants.get_stage(tx, caller.tenant_id, stage) is None:
                raise NotFound(f"No stage {stage!r}.")
            keys = [stage]
        updated = await apps.set_test_lists(tx, app, dict.fromkeys(keys, test_list))
        label = name if not stage else f"{name} ({stage})"
        await _audit_test_lists(tx, caller, app, label, ["addresses", "users", "active"])
    return updated


async def replace_test_lists(
    ctx: Context, caller: Caller, name: str, lists: Mapping[str, TestList]
) -> App:
    """Make the app's lists exactly ``lists`` (by stage name, "" for mail naming no stage;
    users as ids): the lists it does not name are emptied (the configuration file)."""
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, name)
        tenant_users = await members.list_users(tx, caller.tenant_id)
        wanted: dict[str, TestList] = {}
        for stage, given in lists.items():
            if stage and await tenants.get_stage(tx, caller.tenant_id, stage) is None:
                raise NotFound(f"No stage {stage!r}.")
            checked = check_test_list(given.addresses, given.users, given.active, tenant_users)
            wanted[stage] = checked
        for stage in (NO_STAGE, *app.stage_lists):
            wanted.setdefault(stage, TestList())
        updated = await apps.set_test_lists(tx, app, wanted)
        await _audit_test_lists(tx, caller, app, name, (k or "(no stage)" for k in lists))
    return updated


async def _audit_test_lists(
    tx: Tx, caller: Caller, app: App, label: str, changes: Iterable[str]
) -> None:
    await audit_trail.record(tx, caller, "app.test_list", "app", app.id, label, changes)


async def check_stage(ctx: Context, caller: Caller, stage: str) -> None:
    """404 unless the tenant has a stage named ``stage``."""
    async with ctx.db.read() as tx:
        if await tenants.get_stage(tx, caller.tenant_id, stage) is None:
            raise NotFound(f"No stage {stage!r}.")


async def user_emails(ctx: Context, caller: Caller) -> dict[str, str]:
    """The address of every user of the tenant, by id (to show who a list names)."""
    async with ctx.db.read() as tx:
        return {u.id: u.email for u in await members.list_users(tx, caller.tenant_id)}


def redirect(
    asked: Recipients,
    app: App | None,
    stage: str | None,
    user_addresses: Mapping[str, str],
) -> Routing:
    """Apply the app's list for ``stage`` (its users at their addresses now); a user who
    was deleted is left out, with a warning in the log."""
    if app is None:
        return apply_test_list(asked, None)
    test_list = app.list_for(stage)
    try:
        resolved, missing = resolve_test_list(test_list, user_addresses)
    except RouteError as exc:
        raise ValidationFailed.field(exc.field, exc.message) from None
    for user_id in missing:
        log.warning(
            "test list of app %s on stage %s names user %s, who no longer exists; left out "
            "(remove the user from the list)",
            app.name,
            stage or "(none)",
            user_id,
        )
    return apply_test_list(asked, resolved)
