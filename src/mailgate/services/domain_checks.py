"""Sending-domain checks: look a tenant's sending domain up in DNS and judge it.

For ``domain`` the checks are (``mailgate.domain.domain_checks`` has the verdicts):

* ``dkim`` for each DKIM key that signs mail from the domain (the domain's own keys, else
  its nearest parent's, as signing picks them);
* ``spf`` for each mail server mail from the domain is routed through (each account's
  server, else the tenant's default server);
* ``dmarc`` (``_dmarc.{domain}``, else the parent domains' record, nearest first) and the
  ``alignment`` of the DKIM domain with From under its ``adkim`` mode;
* ``mx`` of the bounce address's domain (the envelope sender is the account's address).

DNS goes through the resolver of the ``dns_resolver`` instance setting (the system's when
unset). A look-up that fails makes its check ``error``; the others still run. Nothing here
is stored or sent anywhere but to the resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress

from mailgate.dnscheck.client import DnsClient, DnsUnavailable
from mailgate.dnscheck.spf import check_host, spf_records
from mailgate.domain.domain_checks import (
    Check,
    DomainReport,
    Status,
    alignment_check,
    dkim_check,
    dmarc_check,
    mx_check,
    no_dkim_key,
    spf_check,
    spf_mechanism,
    spf_not_applicable,
)
from mailgate.domain.model import EmailAccount, MailServer
from mailgate.domain.servers import Engine
from mailgate.services.context import Caller, Context
from mailgate.services.signing import DkimKey, dns_record, normalise_domain
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.servers import ServerRepo
from mailgate.storage.signing import DkimKeyRepo


def dns_client(ctx: Context) -> DnsClient:
    """A client on the instance's resolver (``dns_resolver``; the system's when unset)."""
    return DnsClient(ctx.policy.dns_resolver)


async def check_domain(
    ctx: Context, caller: Caller, domain: str, *, dns: DnsClient | None = None
) -> DomainReport:
    """Every check of ``domain`` (422 naming ``domain`` when it is not a domain name)."""
    domain = normalise_domain(domain)
    async with ctx.db.read() as tx:
        keys = await DkimKeyRepo(tx, ctx.box, caller.tenant_id).list()
        accounts = await AccountRepo(tx, ctx.box, caller.tenant_id).list()
        servers = await ServerRepo(tx, ctx.box, caller.tenant_id).list()
    client = dns or dns_client(ctx)
    signing_domain, signing_keys = _signing_keys(domain, keys)
    routed = _routed_servers(domain, accounts_servers(accounts, domain), servers)
    dkim, spf, (dmarc, adkim), mx = await asyncio.gather(
        _dkim(client, domain, signing_keys),
        _spf_all(client, domain, routed),
        _dmarc(client, domain),
        _mx(client, domain),
    )
    alignment = alignment_check(domain, signing_domain, adkim)
    return DomainReport(domain, (*dkim, *spf, dmarc, alignment, mx))


def _signing_keys(domain: str, keys: list[DkimKey]) -> tuple[str | None, list[DkimKey]]:
    """The domain whose keys sign mail from ``domain`` (itself or its nearest parent)."""
    name = domain
    while "." in name:
        found = [k for k in keys if k.domain == name]
        if found:
            return name, found
        name = name.split(".", 1)[1]
    return None, []


def accounts_servers(accounts: list[EmailAccount], domain: str) -> list[str | None]:
    """The server ids of the accounts sending from ``domain`` (None: the default)."""
    return [
        account.mail_server_id
        for account in accounts
        if account.address.lower().rsplit("@", 1)[-1] == domain
    ]


def _routed_servers(
    domain: str, wanted: list[str | None], servers: list[MailServer]
) -> list[MailServer]:
    by_id = {s.id: s for s in servers}
    default = next((s for s in servers if s.is_default), None)
    ids = wanted or [None]
    routed: dict[str, MailServer] = {}
    for server_id in ids:
        server = by_id.get(server_id) if server_id else default
        if server is not None:
            routed.setdefault(server.id, server)
    return list(routed.values())


async def _dkim(client: DnsClient, domain: str, keys: list[DkimKey]) -> list[Check]:
    if not keys:
        return [no_dkim_key(domain)]
    checks = []
    for key in keys:
        name, value = dns_record(key)
        try:
            found = await client.txt(name)
        except DnsUnavailable as exc:
            checks.append(dkim_check(name, value, [], error=str(exc)))
            continue
        checks.append(dkim_check(name, value, found))
    return checks


async def _spf_all(client: DnsClient, domain: str, servers: list[MailServer]) -> list[Check]:
    if not servers:
        return [
            Check(
                "spf",
                domain,
                Status.FAIL,
                "No mail server routes mail from this domain: add one to check SPF for it.",
            )
        ]
    return [await _spf(client, domain, server) for server in servers]


async def _spf(client: DnsClient, domain: str, server: MailServer) -> Check:
    label = f"{server.name} ({server.host})" if server.host else server.name
    if server.engine is Engine.CAPTURE:
        return spf_not_applicable(domain, label)
    term = spf_mechanism(server.engine.value, server.host or "")
    try:
        records = spf_records(await client.txt(domain))
    except DnsUnavailable as exc:
        return Check("spf", domain, Status.ERROR, str(exc))
    if len(records) == 1 and term.startswith("include:"):
        terms = {t.lstrip("+").lower() for t in records[0].split()[1:]}
        if term in terms:
            return spf_check(domain, label, term, records, "pass")
    addresses = await _addresses(client, server.host)
    if isinstance(addresses, Check):
        return addresses
    result = "none" if not records else "neutral"
    notes: tuple[str, ...] = ()
    for address in addresses:
        outcome = await check_host(client, address, domain)
        result, notes = outcome.result, tuple(outcome.notes)
        if result in ("pass", "temperror", "permerror"):
            break
    if records and not addresses:
        notes = (f"{server.host} has no address to check",)
    return spf_check(domain, label, term, records, result, notes=notes)


async def _addresses(client: DnsClient, host: str | None) -> list[str] | Check:
    if not host:
        return []
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        return await client.addresses(host)
    except DnsUnavailable as exc:
        return Check("spf", host, Status.ERROR, str(exc))


async def _dmarc(client: DnsClient, domain: str) -> tuple[Check, str]:
    """The domain's DMARC record, else the nearest parent's (an approximation of the
    organizational domain of RFC 7489 3.2 without the public-suffix list)."""
    name = domain
    try:
        while name.count(".") >= 1:
            found = await client.txt(f"_dmarc.{name}")
            if found:
                return dmarc_check(domain, f"_dmarc.{name}", found)
            name = name.split(".", 1)[1]
    except DnsUnavailable as exc:
        return Check("dmarc", f"_dmarc.{domain}", Status.ERROR, str(exc)), "r"
    return dmarc_check(domain, f"_dmarc.{domain}", [])


async def _mx(client: DnsClient, domain: str) -> Check:
    try:
        return mx_check(domain, await client.mx(domain))
    except DnsUnavailable as exc:
        return mx_check(domain, [], error=str(exc))
