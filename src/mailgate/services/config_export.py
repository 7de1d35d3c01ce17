"""Reading a configuration out of the database: each tenant's state, and the file it makes.

:func:`read_state` reads what :mod:`mailgate.services.config_plan` compares a file with;
:func:`export_document` renders the same states as a file (``mailgate config export``) in
which every secret is a reference to an environment variable, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailgate.domain.model import SEEDED_STAGES, App, EmailAccount, MailServer, Stage
from mailgate.domain.roles import Permission, Principal
from mailgate.errors import NotFound
from mailgate.services import accounts as account_service
from mailgate.services import apps as app_service
from mailgate.services import servers as server_service
from mailgate.services import tenants as tenant_service
from mailgate.services.auth import authorize
from mailgate.services.config_apps import render_app
from mailgate.services.config_file import (
    IMAP_DEFAULTS,
    IMAP_OAUTH_SECRETS,
    SERVER_DEFAULTS,
    VERSION,
    env_name,
    plain_oauth,
)
from mailgate.services.context import Caller, Context
from mailgate.services.servers import SECRET_FIELDS as SERVER_SECRETS
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.servers import ServerRepo


@dataclass(frozen=True, slots=True)
class TenantState:
    """What the database holds for one tenant (``tenant`` is ``None`` when it is missing).

    The secrets, in clear, are read only to tell whether the file changes them.
    """

    slug: str
    caller: Caller | None
    stages: tuple[Stage, ...]
    servers: tuple[MailServer, ...] = ()
    accounts: tuple[EmailAccount, ...] = ()
    apps: tuple[App, ...] = ()
    #: The e-mail address of each user of the tenant, by id (test lists name users).
    users: Mapping[str, str] = field(default_factory=dict)
    server_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    account_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)


# Reading ------------------------------------------------------------------------------------


async def read_state(
    ctx: Context, principal: Principal, slug: str, *, secrets: bool, missing_ok: bool
) -> TenantState:
    """The tenant ``slug`` as stored; with ``missing_ok`` an unknown tenant reads as empty."""
    try:
        caller = await authorize(ctx, principal, slug, Permission.MANAGE_EMAIL_CONFIGURATIONS)
    except NotFound:
        if not missing_ok:
            raise
        seeded = tuple(
            Stage(id="", tenant_id="", name=n, mail_server_id=None) for n in SEEDED_STAGES
        )
        return TenantState(slug, None, seeded)
    servers = tuple(await server_service.list_servers(ctx, caller))
    accounts = tuple(await account_service.list_accounts(ctx, caller))
    server_secrets: dict[str, Mapping[str, str]] = {}
    account_secrets: dict[str, Mapping[str, str]] = {}
    if secrets:
        async with ctx.db.read() as tx:
            server_repo = ServerRepo(tx, ctx.box, caller.tenant_id)
            account_repo = AccountRepo(tx, ctx.box, caller.tenant_id)
            for server in servers:
                if server.secrets_set:
                    server_secrets[server.id] = await server_repo.secrets(server.id)
            for account in accounts:
                if account.secrets_set:
                    account_secrets[account.id] = await account_repo.secrets(account.id)
    return TenantState(
        slug=slug,
        caller=caller,
        stages=tuple(await tenant_service.list_stages(ctx, caller)),
        servers=servers,
        accounts=accounts,
        apps=tuple(await app_service.list_apps(ctx, caller)),
        users=await app_service.user_emails(ctx, caller),
        server_secrets=server_secrets,
        account_secrets=account_secrets,
    )


async def export_document(
    ctx: Context, principal: Principal, slugs: Sequence[str] | None = None
) -> dict[str, Any]:
    """The document describing the tenants ``slugs`` (every tenant when ``None``)."""
    if slugs is None:
        found, cursor = [], None
        while page := await tenant_service.list_tenants(ctx, principal, limit=100, cursor=cursor):
            found += [t.slug for t in page]
            cursor = page[-1].id
        slugs = found
    states = [
        await read_state(ctx, principal, slug, secrets=False, missing_ok=False) for slug in slugs
    ]
    return render(states)


# Rendering ------------------------------------------------------------------------------------


def server_values(server: MailServer) -> dict[str, Any]:
    """A stored server's settings in the shape of :attr:`ServerSpec.values`."""
    values = {key: getattr(server, key) for key in SERVER_DEFAULTS}
    for key in ("engine", "security", "auth", "min_tls_version"):
        values[key] = str(values[key].value)
    values["oauth"] = plain_oauth(server.oauth)
    values["timeout_seconds"] = float(server.timeout_seconds)
    values["options"] = dict(server.options)
    return values


def imap_values(account: EmailAccount) -> dict[str, Any] | None:
    if account.imap is None:
        return None
    values = {key: getattr(account.imap, key) for key in IMAP_DEFAULTS}
    oauth = {k: v for k, v in (account.imap.oauth or {}).items() if v is not None}
    values["oauth"] = oauth or None
    return values


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop what a file leaves out: unset values, empty lists and tables."""
    return {k: v for k, v in values.items() if v is not None and v != {} and v != []}


def _stage_order(stages: Iterable[Stage]) -> list[str]:
    """The seeded stages in their order, then the others by name (stable across databases)."""
    names = {s.name for s in stages}
    seeded = [n for n in SEEDED_STAGES if n in names]
    return seeded + sorted(names - set(seeded))


def render(states: Iterable[TenantState]) -> dict[str, Any]:
    """The document that describes ``states``; secrets only as ``{"env": ...}`` references."""
    used: set[str] = set()

    def ref(*parts: str) -> dict[str, str]:
        base = name = env_name(*parts)
        n = 1
        while name in used:  # names that read alike ("a-b" and "a_b") get distinct variables
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        return {"env": name}

    tenants: dict[str, Any] = {}
    for state in sorted(states, key=lambda s: s.slug):
        if state.caller is None:
            continue
        slug, stage_order = state.slug, _stage_order(state.stages)
        names = {s.id: s.name for s in state.servers}
        servers: dict[str, Any] = {}
        for server in sorted(state.servers, key=lambda s: s.name):
            doc = _compact(server_values(server))
            stages = [s for s in stage_order if s in server.stages]
            if stages:
                doc["stages"] = stages
            if server.fallback_server_id in names:
                doc["fallback_server"] = names[server.fallback_server_id]
            for api_name, key in SERVER_SECRETS.items():
                if key in server.secrets_set:
                    outer, _, inner = api_name.rpartition(".")
                    target = doc.setdefault(outer, {}) if outer else doc
                    target[inner] = ref(slug, server.name, key)
            servers[server.name] = doc
        accounts: dict[str, Any] = {}
        for account in sorted(state.accounts, key=lambda a: a.address):
            entry: dict[str, Any] = {"display_name": account.display_name}
            if account.description:
                entry["description"] = account.description
            if account.reply_to:
                entry["reply_to"] = account.reply_to
            if account.mail_server_id in names:
                entry["mail_server"] = names[account.mail_server_id]
            entry["is_default"] = account.is_default
            imap = imap_values(account)
            if imap is not None:
                entry["imap"] = _compact(imap)
                if entry["imap"].get("auth") == "password":
                    del entry["imap"]["auth"]  # the default
                if "imap_password" in account.secrets_set:
                    entry["imap"]["password"] = ref(slug, account.address, "imap_password")
                for name in IMAP_OAUTH_SECRETS:
                    key = f"imap_oauth_{name}"
                    if "oauth" in entry["imap"] and key in account.secrets_set:
                        entry["imap"]["oauth"][name] = ref(slug, account.address, key)
            accounts[account.address] = entry
        tenants[slug] = {
            "name": state.caller.tenant.name,
            "stages": stage_order,
            "mail_servers": servers,
            "email_accounts": accounts,
            "apps": {
                app.name: render_app(app, state.users)
                for app in sorted(state.apps, key=lambda a: a.name)
            },
        }
    return {"version": VERSION, "tenants": tenants}
