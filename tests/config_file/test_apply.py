"""Applying documents through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import update

from mailgate.domain.roles import Permission
from mailgate.errors import ConfigurationError
from mailgate.services import accounts, apps, servers
from mailgate.services.auth import authorize
from mailgate.services.boot import open_context
from mailgate.services.config_export import export_document
from mailgate.services.config_file import ConfigFileError, dumps_document
from mailgate.services.context import Context
from mailgate.settings import Settings
from mailgate.storage.secretbox import generate_key
from mailgate.storage.servers import ServerRepo
from mailgate.storage.tables import mail_servers
from tests.config_file.helpers import (
    CANARY,
    CLI,
    ENV,
    actions,
    apply_doc,
    audit_rows,
    doc,
    written,
)
from tests.conftest import ADMIN_TOKEN, PG_ENV, _psycopg_dsn


@contextlib.asynccontextmanager
async def second_database(settings: Settings, tmp_path: Path) -> AsyncIterator[Context]:
    """Another empty database of the same kind, with its own key."""
    url = settings.effective_database_url
    schema = None
    if url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"
    else:
        import psycopg

        schema = f"mgtest_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(_psycopg_dsn(os.environ[PG_ENV]), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        base = os.environ[PG_ENV]
        url = f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    second = Settings(database_url=url, data_dir=tmp_path / "second", secret_keys=[generate_key()])
    fresh = await open_context(second, auto_upgrade=True)
    try:
        yield fresh
    finally:
        await fresh.db.dispose()
        if schema is not None:
            with psycopg.connect(_psycopg_dsn(os.environ[PG_ENV]), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


EXPECTED_ENV = {
    "tenants.acme.mail_servers.relay.password": "MAILGATE_SECRET_ACME_RELAY_PASSWORD",
    "tenants.acme.mail_servers.backup.api_key": "MAILGATE_SECRET_ACME_BACKUP_API_KEY",
}


async def _caller(ctx: Context, slug: str = "acme") -> Any:
    return await authorize(ctx, CLI, slug, Permission.MANAGE_EMAIL_CONFIGURATIONS)


async def test_apply_creates_everything_through_the_services(ctx: Context) -> None:
    changes = await apply_doc(ctx, doc())
    got = actions(changes)
    assert got[("tenant", "acme")] == "create"
    assert got[("stage", "staging")] == "create"
    assert got[("stage", "production")] == "unchanged"  # seeded with the tenant
    assert got[("mail server", "relay")] == "create"
    assert got[("email account", "noreply@acme.example")] == "create"
    assert got[("app", "billing")] == "create"
    caller = await _caller(ctx)
    by_name = {s.name: s for s in await servers.list_servers(ctx, caller)}
    relay = by_name["relay"]
    assert relay.is_default and relay.stages == ("production",)
    assert relay.fallback_server_id == by_name["backup"].id
    assert relay.options == {"ehlo_name": "mx.acme.example"} and relay.max_connections == 8
    async with ctx.db.read() as tx:
        assert (await ServerRepo(tx, ctx.box, caller.tenant_id).secrets(relay.id)) == {
            "password": CANARY
        }
    account = {a.address: a for a in await accounts.list_accounts(ctx, caller)}
    assert account["noreply@acme.example"].mail_server_id == relay.id
    assert account["noreply@acme.example"].imap is not None
    assert "imap_password" in account["noreply@acme.example"].secrets_set
    billing = await apps.get_app(ctx, caller, "billing")
    assert billing.test_list.addresses == ("qa@acme.example",) and billing.test_list.active
    # A file without test_lists: the list is also every stage's but production's.
    assert sorted(billing.stage_lists) == ["development", "staging", "test"]
    assert billing.stage_lists["staging"] == billing.test_list
    rows = await audit_rows(ctx)
    assert rows and {r.actor for r in rows} == {"cli:config"}
    assert {"tenant.create", "mail_server.create", "app.test_list"} <= {r.action for r in rows}


async def test_reapplying_an_unchanged_file_changes_and_audits_nothing(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    before = await audit_rows(ctx)
    again = await apply_doc(ctx, doc())
    assert written(again) == []
    assert len(await audit_rows(ctx)) == len(before)


async def test_round_trip_export_apply_export(
    ctx: Context, settings: Settings, tmp_path: Path
) -> None:
    await apply_doc(ctx, doc())
    exported = await export_document(ctx, CLI)
    # The export names a variable for every secret; give each one a value and apply it to
    # an empty database.
    acme = exported["tenants"]["acme"]
    relay = acme["mail_servers"]["relay"]
    assert relay["password"] == {"env": "MAILGATE_SECRET_ACME_RELAY_PASSWORD"}
    imap = acme["email_accounts"]["noreply@acme.example"]["imap"]
    env = {
        relay["password"]["env"]: CANARY,
        acme["mail_servers"]["backup"]["api_key"]["env"]: "SG.x",
        imap["password"]["env"]: "imap",
    }
    async with second_database(settings, tmp_path) as fresh:
        first = await apply_doc(fresh, exported, env=env)
        assert {c.action.value for c in first} == {"create", "unchanged"}
        assert await export_document(fresh, CLI) == exported
        assert written(await apply_doc(fresh, exported, env=env)) == []


async def test_dry_run_changes_nothing(ctx: Context) -> None:
    changes = await apply_doc(ctx, doc(), dry_run=True)
    assert actions(changes)[("mail server", "relay")] == "create"
    assert await export_document(ctx, CLI) == {"version": 1, "tenants": {}}
    await apply_doc(ctx, doc())
    before = await export_document(ctx, CLI)
    rows = len(await audit_rows(ctx))
    changed = doc()
    changed["tenants"]["acme"]["mail_servers"]["relay"]["max_connections"] = 2
    plan = await apply_doc(ctx, changed, dry_run=True, prune=True)
    assert [(c.name, c.fields) for c in written(plan)] == [("relay", ("max_connections",))]
    assert await export_document(ctx, CLI) == before
    assert len(await audit_rows(ctx)) == rows


async def test_updates_touch_only_what_differs(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    changed = doc()
    acme = changed["tenants"]["acme"]
    acme["name"] = "Acme Inc"
    acme["mail_servers"]["relay"]["rate_limit_per_minute"] = 60
    acme["email_accounts"]["alerts@acme.example"]["display_name"] = "Alerts team"
    acme["apps"]["portal"] = {"test_list": {"addresses": ["dev@acme.example"], "active": True}}
    env = {**ENV, "MAILGATE_SECRET_ACME_BACKUP_API_KEY": "SG.rotated"}
    changes = written(await apply_doc(ctx, changed, env=env))
    assert {(c.kind, c.name, c.fields) for c in changes} == {
        ("tenant", "acme", ("name",)),
        ("mail server", "relay", ("rate_limit_per_minute",)),
        ("mail server", "backup", ("api_key",)),
        ("email account", "alerts@acme.example", ("display_name",)),
        # A file without test_lists: its list is also every non-production stage's.
        (
            "app",
            "portal",
            ("test_list", "test_lists.development", "test_lists.staging", "test_lists.test"),
        ),
    }
    rows = [r for r in await audit_rows(ctx) if r.action == "mail_server.update"]
    assert {r.object_name for r in rows} == {"relay", "backup"}
    assert written(await apply_doc(ctx, changed, env=env)) == []


async def test_prune_deletes_only_with_prune(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    smaller = doc()
    acme = smaller["tenants"]["acme"]
    acme["stages"].remove("staging")
    del acme["mail_servers"]["backup"]
    del acme["mail_servers"]["relay"]["fallback_server"]
    del acme["email_accounts"]["alerts@acme.example"]
    del acme["apps"]["portal"]
    kept = await apply_doc(ctx, smaller)
    assert not [c for c in kept if c.action.value == "delete"]
    assert actions(kept)[("mail server", "backup")] == "unchanged"
    assert "--prune" in next(c.note for c in kept if c.name == "backup")
    pruned = await apply_doc(ctx, smaller, prune=True)
    assert {(c.kind, c.name) for c in pruned if c.action.value == "delete"} == {
        ("stage", "staging"),
        ("mail server", "backup"),
        ("email account", "alerts@acme.example"),
        ("app", "portal"),
    }
    exported = (await export_document(ctx, CLI))["tenants"]["acme"]
    assert set(exported["mail_servers"]) == {"relay", "capture"}
    assert "staging" not in exported["stages"]
    assert set(exported["apps"]) == {"billing"}
    assert written(await apply_doc(ctx, smaller, prune=True)) == []


async def test_sections_left_out_are_never_pruned(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    only_name = {"version": 1, "tenants": {"acme": {"name": "Acme Corp"}}}
    assert written(await apply_doc(ctx, only_name, prune=True)) == []
    assert set((await export_document(ctx, CLI))["tenants"]["acme"]["apps"]) == {
        "billing",
        "portal",
    }


async def test_stages_move_between_servers_and_fallbacks_link_later(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    swapped = doc()
    servers_ = swapped["tenants"]["acme"]["mail_servers"]
    servers_["relay"]["stages"] = ["staging"]
    servers_["backup"]["stages"] = ["production"]
    servers_["backup"]["fallback_server"] = "spare"
    servers_["spare"] = {"engine": "capture"}
    await apply_doc(ctx, swapped)
    caller = await _caller(ctx)
    by_name = {s.name: s for s in await servers.list_servers(ctx, caller)}
    assert by_name["relay"].stages == ("staging",)
    assert by_name["backup"].stages == ("production",)
    assert by_name["backup"].fallback_server_id == by_name["spare"].id
    assert written(await apply_doc(ctx, swapped)) == []


async def test_service_errors_stop_at_their_path_in_the_file(ctx: Context) -> None:
    bad = doc()
    bad["tenants"]["acme"]["mail_servers"]["relay"]["port"] = 25
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, bad)
    assert caught.value.path == "tenants.acme.mail_servers.relay.port"
    assert "port 25 is refused" in caught.value.detail
    # Steps before the error stay applied; the fixed file carries on from there.
    assert "backup" in (await export_document(ctx, CLI))["tenants"]["acme"]["mail_servers"]
    assert actions(await apply_doc(ctx, doc()))[("mail server", "relay")] == "create"


async def test_a_moved_server_needs_its_secret_again(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    moved = doc()
    relay = moved["tenants"]["acme"]["mail_servers"]["relay"]
    relay["host"] = "smtp2.acme.example"
    del relay["password"]
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, moved)
    assert caught.value.path == "tenants.acme.mail_servers.relay.password"
    assert "requires the password again" in caught.value.detail
    relay["password"] = {"env": "MAILGATE_SECRET_ACME_RELAY_PASSWORD"}
    changes = written(await apply_doc(ctx, moved))
    assert [(c.name, c.fields) for c in changes] == [("relay", ("host",))]


async def test_plan_errors_name_paths(ctx: Context) -> None:
    cases: list[tuple[Any, str, str]] = [
        (
            lambda a: a["mail_servers"]["relay"].update(stages=["production", "staging"]),
            "tenants.acme.mail_servers.backup.stages[0]",
            "also listed on mail server 'relay'",
        ),
        (
            lambda a: a["mail_servers"]["relay"].update(stages=["qa"]),
            "tenants.acme.mail_servers.relay.stages[0]",
            "no stage named 'qa'",
        ),
        (
            lambda a: a["mail_servers"]["relay"].update(fallback_server="nowhere"),
            "tenants.acme.mail_servers.relay.fallback_server",
            "no mail server named 'nowhere'",
        ),
        (
            lambda a: a["email_accounts"]["alerts@acme.example"].pop("mail_server"),
            "tenants.acme.email_accounts.alerts@acme.example.mail_server",
            "required for a new account",
        ),
        (
            lambda a: a["mail_servers"]["capture"].update(is_default=True),
            "tenants.acme.mail_servers.capture.is_default",
            "only one mail server can be the default; 'relay' is too",
        ),
    ]
    for change, path, message in cases:
        bad = doc()
        change(bad["tenants"]["acme"])
        with pytest.raises(ConfigFileError) as caught:
            await apply_doc(ctx, bad, dry_run=True)
        assert (caught.value.path, message in caught.value.detail) == (path, True)


async def test_an_account_address_is_its_identity(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    renamed = doc()
    accounts_ = renamed["tenants"]["acme"]["email_accounts"]
    accounts_["alerts2@acme.example"] = accounts_.pop("alerts@acme.example")
    changes = await apply_doc(ctx, renamed)
    assert actions(changes)[("email account", "alerts2@acme.example")] == "create"
    note = next(c.note for c in changes if c.name == "alerts@acme.example")
    assert "a changed address is a new account" in note


async def test_the_export_never_holds_a_secret(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    exported = await export_document(ctx, CLI)
    text = dumps_document(exported, fmt="json")
    for secret in (*ENV.values(), ADMIN_TOKEN):
        raw = secret.encode()
        for form in (
            secret,
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            base64.b64encode(raw).decode().rstrip("="),
            raw.hex(),
            raw.hex().upper(),
        ):
            assert form not in text
    try:
        toml = dumps_document(exported, fmt="toml")
    except ConfigurationError:
        toml = ""
    assert CANARY not in toml
    refs = {
        "tenants.acme.mail_servers.relay.password": exported["tenants"]["acme"]["mail_servers"][
            "relay"
        ]["password"]["env"],
        "tenants.acme.mail_servers.backup.api_key": exported["tenants"]["acme"]["mail_servers"][
            "backup"
        ]["api_key"]["env"],
    }
    assert refs == EXPECTED_ENV
    assert json.loads(text) == exported


async def test_export_of_named_tenants(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    other = {"version": 1, "tenants": {"beta": {"name": "Beta"}}}
    await apply_doc(ctx, other)
    assert set((await export_document(ctx, CLI))["tenants"]) == {"acme", "beta"}
    assert set((await export_document(ctx, CLI, ["beta"]))["tenants"]) == {"beta"}


async def test_prune_refuses_a_server_whose_default_or_accounts_the_file_does_not_move(
    ctx: Context,
) -> None:
    await apply_doc(ctx, doc())
    smaller = doc()
    acme = smaller["tenants"]["acme"]
    del acme["mail_servers"]["relay"]
    acme["mail_servers"]["capture"]["stages"] = ["development", "test", "production"]
    acme["mail_servers"]["capture"]["is_default"] = True
    no_accounts = copy.deepcopy(smaller)
    del no_accounts["tenants"]["acme"]["email_accounts"]  # left out: the account stays on relay
    with pytest.raises(ConfigFileError) as accounts_missing:
        await apply_doc(ctx, no_accounts, prune=True)
    assert "accounts_to" in str(accounts_missing.value)
    assert "noreply@acme.example" in str(accounts_missing.value)
    acme["email_accounts"]["noreply@acme.example"]["mail_server"] = "capture"
    no_default = copy.deepcopy(smaller)
    del no_default["tenants"]["acme"]["mail_servers"]["capture"]["is_default"]
    async with ctx.db.transaction() as tx:  # relay is the default again
        await tx.execute(update(mail_servers).values(is_default=mail_servers.c.name == "relay"))
    with pytest.raises(ConfigFileError) as default_missing:
        await apply_doc(ctx, no_default, prune=True)
    assert "default_to" in str(default_missing.value)
    assert "tenant default" in str(default_missing.value)
    await apply_doc(ctx, smaller, prune=True)
    exported = (await export_document(ctx, CLI))["tenants"]["acme"]
    assert set(exported["mail_servers"]) == {"backup", "capture"}
    assert exported["mail_servers"]["capture"]["is_default"] is True
