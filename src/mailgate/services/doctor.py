"""``mailgate doctor``: the checks an operator runs before a deploy.

:func:`examine` looks at an open database with the configured keys and returns every
:class:`Finding`: a secret no key opens, a mail server that cannot be built into an engine
(its settings break the server schema, e.g. an unknown option, or the engine refuses them),
a mail server or inbox whose ``ca_keystore`` names no ``ca`` keystore (or whose CA
certificates do not load), a stage with no route to a mail server, a tenant without a
default mail server or default email account, a sender domain without a usable DKIM key.
Each finding says what is wrong and how to fix it. Nothing is written and no connection is
opened to any mail server.

Settings, the database and the keys are checked by the command itself
(:mod:`mailgate.cli_doctor`) before this runs, since nothing else can be checked without
them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mailgate.compose.dkim import DkimSigner
from mailgate.domain.model import EmailAccount, MailServer, Stage, Tenant
from mailgate.domain.server_schema import server_problems
from mailgate.domain.servers import Engine
from mailgate.engines.factory import engine_for
from mailgate.engines.server_config import server_config
from mailgate.errors import ConfigurationError, MailgateError, PolicyViolation, SecretKeyError
from mailgate.services.context import Context
from mailgate.storage import rotation, tenants
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.servers import ServerRepo
from mailgate.storage.signing import DkimKey, DkimKeyRepo, ca_bundles

#: The checks, in the order they are reported.
CHECKS = ("settings", "database", "keys", "secrets", "servers", "routes", "dkim")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: which ``check`` found it, on what, what is wrong and how to fix it."""

    check: str
    subject: str
    problem: str
    fix: str


class _NoNetwork:
    """A dialer that refuses every connection: building an engine must not connect."""

    async def connect(self, host: str, port: int, *, timeout: float) -> socket.socket:
        raise PolicyViolation("mailgate doctor opens no connection")


def _server_values(server: MailServer) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": server.name,
        "engine": server.engine.value,
        "provider": server.provider,
        "host": server.host,
        "port": server.port,
        "security": server.security.value,
        "min_tls_version": server.min_tls_version.value,
        "verify_certificate": server.verify_certificate,
        "ca_certificates": server.ca_certificates,
        "ca_keystore": server.ca_keystore,
        "auth": server.auth.value,
        "username": server.username,
        "allow_insecure_auth": server.allow_insecure_auth,
        "oauth": server.oauth,
        "api_base_url": server.api_base_url,
        "sender_upn": server.sender_upn,
        "timeout_seconds": server.timeout_seconds,
        "max_connections": server.max_connections,
        "rate_limit_per_minute": server.rate_limit_per_minute,
        "options": dict(server.options),
    }
    return values


def _server_fix(tenant: Tenant, server: MailServer, field: str) -> str:
    where = f"PATCH /api/v1/tenants/{tenant.slug}/mail-servers/{server.id}"
    if field.startswith("options."):
        key = field.split(".", 1)[1]
        return (
            f"correct or remove the option {key!r}: {where} with the full 'options' object "
            "(or edit the server in the web UI); docs/configuration.md lists the known options"
        )
    return f"correct '{field}': {where} (or edit the server in the web UI)"


def _missing_ca(tenant: Tenant, subject: str, name: str, fix: str) -> Finding:
    return Finding(
        "servers",
        subject,
        f"ca_keystore: there is no ca keystore named {name!r}, so only the system's "
        "trusted certificates are accepted",
        f"upload the CA certificates as a ca keystore named {name!r} "
        f"(POST /api/v1/tenants/{tenant.slug}/keystores), or {fix}",
    )


async def _check_server(
    tenant: Tenant, server: MailServer, secrets: Mapping[str, str], trusted: dict[str, str]
) -> list[Finding]:
    subject = f"tenant {tenant.slug}, mail server {server.name!r} ({server.id})"
    problems = server_problems(_server_values(server))
    if problems:
        return [
            Finding("servers", subject, f"{field}: {message}", _server_fix(tenant, server, field))
            for field, message in problems
        ]
    ca = trusted.get(server.ca_keystore) if server.ca_keystore else None
    if server.ca_keystore and ca is None:
        fix = _server_fix(tenant, server, "ca_keystore").removeprefix("correct ")
        return [_missing_ca(tenant, subject, server.ca_keystore, f"change {fix}")]
    try:
        engine = engine_for(server_config(server, secrets, trusted=ca), dialer=_NoNetwork())
    except (ConfigurationError, ValueError, ssl.SSLError) as exc:
        fix = (
            f"edit the server (PATCH /api/v1/tenants/{tenant.slug}/mail-servers/{server.id} "
            "or the web UI); until then every message routed to it is deferred"
        )
        return [Finding("servers", subject, f"cannot build its engine: {exc}", fix)]
    await engine.aclose()
    return []


def _routes(
    tenant: Tenant,
    stages: list[Stage],
    servers: list[MailServer],
    accounts: list[EmailAccount],
) -> list[Finding]:
    findings: list[Finding] = []
    base = f"/api/v1/tenants/{tenant.slug}"
    default_server = next((s for s in servers if s.is_default), None)
    default_account = next((a for a in accounts if a.is_default), None)
    if default_server is None:
        findings.append(
            Finding(
                "routes",
                f"tenant {tenant.slug}",
                "has no default mail server: mail for a stage without its own server and "
                "from an account without one has no route",
                f"mark one server as default: PATCH {base}/mail-servers/{{id}} "
                '{"is_default": true}',
            )
        )
    if default_account is None:
        findings.append(
            Finding(
                "routes",
                f"tenant {tenant.slug}",
                "has no default email account: a message without 'from' is refused",
                f"mark one account as default: PATCH {base}/email-accounts/{{id}} "
                '{"is_default": true}',
            )
        )
    account_server = default_account.mail_server_id if default_account else None
    for stage in stages:
        if stage.mail_server_id is None and default_server is None and account_server is None:
            findings.append(
                Finding(
                    "routes",
                    f"tenant {tenant.slug}, stage {stage.name!r}",
                    "has no mail server and there is no default to fall back to",
                    f"assign a server to the stage (its 'stages' list: PATCH "
                    f"{base}/mail-servers/{{id}}) or mark a default server",
                )
            )
    return findings


def _covered(domain: str, keyed: set[str]) -> bool:
    name = domain.lower().rstrip(".")
    while "." in name:
        if name in keyed:
            return True
        name = name.split(".", 1)[1]
    return False


async def _dkim(
    tenant: Tenant,
    repo: DkimKeyRepo,
    accounts: list[EmailAccount],
    servers: list[MailServer],
) -> list[Finding]:
    findings: list[Finding] = []
    usable: set[str] = set()
    keys: list[tuple[DkimKey, bytes]] = list(await repo.with_private_keys())
    for key, sealed in keys:
        subject = f"tenant {tenant.slug}, DKIM key {key.selector}._domainkey.{key.domain}"
        try:
            pem = repo.open_private_key(key.id, sealed)
            algorithm: Literal["rsa", "ed25519"] = (
                "ed25519" if key.algorithm == "ed25519" else "rsa"
            )
            await asyncio.to_thread(DkimSigner, key.domain, key.selector, pem, algorithm)
        except MailgateError as exc:
            findings.append(
                Finding(
                    "dkim",
                    subject,
                    f"cannot sign: {exc}; mail from {key.domain} is refused, never sent unsigned",
                    f"create a new key: POST /api/v1/tenants/{tenant.slug}/dkim-keys and "
                    "publish its DNS record",
                )
            )
            continue
        usable.add(key.domain.lower())
    capture = {s.id for s in servers if s.engine is Engine.CAPTURE}
    seen: set[str] = set()
    for account in accounts:
        domain = account.address.rsplit("@", 1)[-1].lower()
        if account.mail_server_id in capture or domain in seen or _covered(domain, usable):
            continue
        seen.add(domain)
        findings.append(
            Finding(
                "dkim",
                f"tenant {tenant.slug}, sender domain {domain}",
                f"has no DKIM key: mail from {account.address} is sent without a DKIM signature",
                f"create one: POST /api/v1/tenants/{tenant.slug}/dkim-keys "
                f'{{"domain": "{domain}"}} and publish the DNS TXT record it returns',
            )
        )
    return findings


async def _all_tenants(ctx: Context) -> list[Tenant]:
    found: list[Tenant] = []
    after: str | None = None
    async with ctx.db.read() as tx:
        while True:
            page = await tenants.list_tenants(tx, limit=500, after=after)
            found += page
            if len(page) < 500:
                return found
            after = page[-1].id


async def examine(ctx: Context) -> list[Finding]:
    """Every problem of the instance behind ``ctx`` (empty when all is well)."""
    findings: list[Finding] = []
    for table, row_id, reason in await rotation.undecryptable(ctx.db, ctx.box):
        findings.append(
            Finding(
                "secrets",
                f"{table} {row_id}",
                reason,
                "restore the key it was sealed with (key file or MAILGATE_SECRET_KEYS), or "
                "enter the secret again",
            )
        )
    for tenant in await _all_tenants(ctx):
        try:
            findings += await _examine_tenant(ctx, tenant)
        except SecretKeyError as exc:
            findings.append(
                Finding(
                    "secrets",
                    f"tenant {tenant.slug}",
                    f"its servers and accounts cannot be checked: {exc}",
                    "fix the secrets reported above first, then run mailgate doctor again",
                )
            )
    order = {name: i for i, name in enumerate(CHECKS)}
    return sorted(findings, key=lambda f: order.get(f.check, len(order)))


async def _examine_tenant(ctx: Context, tenant: Tenant) -> list[Finding]:
    findings: list[Finding] = []
    async with ctx.db.read() as tx:
        stages = await tenants.list_stages(tx, tenant.id)
        repo = ServerRepo(tx, ctx.box, tenant.id)
        servers = await repo.list()
        secrets = {s.id: await repo.secrets(s.id) for s in servers}
        accounts = await AccountRepo(tx, ctx.box, tenant.id).list()
        dkim_keys = DkimKeyRepo(tx, ctx.box, tenant.id)
        findings += await _dkim(tenant, dkim_keys, accounts, servers)
        named = {s.ca_keystore for s in servers} | {a.imap.ca_keystore for a in accounts if a.imap}
        found = await ca_bundles(tx, ctx.box, ((tenant.id, n) for n in named if n))
    trusted = {name: pem for (_, name), pem in found.items()}
    for server in servers:
        findings += await _check_server(tenant, server, secrets[server.id], trusted)
    for account in accounts:
        name = account.imap.ca_keystore if account.imap else None
        if name and name not in trusted:
            subject = f"tenant {tenant.slug}, inbox of {account.address} ({account.id})"
            where = f"PATCH /api/v1/tenants/{tenant.slug}/email-accounts/{account.id}"
            findings.append(
                _missing_ca(tenant, subject, name, f"change 'imap.ca_keystore': {where}")
            )
    findings += _routes(tenant, stages, servers, accounts)
    return findings
