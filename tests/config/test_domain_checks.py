"""GET …/domains/{domain}/check against a loopback DNS server (the dns_resolver setting)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from mailgate.runtime import Context
from mailgate.settings import Settings
from tests.config.helpers import create_server, new_tenant
from tests.conftest import ADMIN
from tests.support.dns_server import DnsServer

T = "/api/v1/tenants/acme"
SMTP_HOST = "smtp.relay.example"
SMTP_IP = "192.0.2.10"


@pytest.fixture
async def dns(ctx: Context) -> AsyncIterator[DnsServer]:
    async with DnsServer() as server:
        ctx.policy = replace(ctx.policy, dns_resolver=server.address)
        server.add(SMTP_HOST, "A", SMTP_IP)
        yield server


async def setup(client: httpx.AsyncClient, address: str = "noreply@acme.example") -> str:
    """A tenant with an SMTP server, a DKIM key for acme.example and an account; returns
    the key's record value."""
    await new_tenant(client)
    server = await create_server(client, "acme", host=SMTP_HOST, is_default=True)
    key = await client.post(
        f"{T}/dkim-keys", json={"domain": "acme.example", "selector": "s1"}, headers=ADMIN
    )
    assert key.status_code == 201, key.text
    account = await client.post(
        f"{T}/email-accounts",
        json={"address": address, "display_name": "Acme", "mail_server_id": server["id"]},
        headers=ADMIN,
    )
    assert account.status_code == 201, account.text
    return str(key.json()["dns_record"]["value"])


async def check(client: httpx.AsyncClient, domain: str = "acme.example") -> dict[str, Any]:
    r = await client.get(f"{T}/domains/{domain}/check", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


def by_kind(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in report["checks"]}


async def test_a_well_published_domain_passes_every_check(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    dkim = await setup(client)
    dns.add("s1._domainkey.acme.example", "TXT", dkim)
    dns.add("acme.example", "TXT", "google-site-verification=x", "v=spf1 ip4:192.0.2.0/24 -all")
    dns.add("_dmarc.acme.example", "TXT", "v=DMARC1; p=reject; rua=mailto:d@acme.example")
    dns.add("acme.example", "MX", "10 mx.acme.example.")

    report = await check(client)

    assert report["ok"] is True, report
    kinds = by_kind(report)
    assert [c["kind"] for c in report["checks"]] == ["dkim", "spf", "dmarc", "alignment", "mx"]
    assert all(c["status"] == "pass" and c["publish"] is None for c in report["checks"])
    assert kinds["dkim"]["name"] == "s1._domainkey.acme.example"
    assert "v=spf1 ip4:192.0.2.0/24 -all" in kinds["spf"]["found"]
    assert kinds["mx"]["found"] == ["10 mx.acme.example"]
    assert ("s1._domainkey.acme.example", "TXT") in dns.asked


async def test_an_empty_zone_fails_with_the_records_to_publish(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    dkim = await setup(client)

    report = await check(client)

    assert report["ok"] is False
    kinds = by_kind(report)
    assert {k: c["status"] for k, c in kinds.items()} == {
        "dkim": "fail",
        "spf": "fail",
        "dmarc": "fail",
        "alignment": "pass",
        "mx": "fail",
    }
    assert kinds["dkim"]["publish"] == {
        "type": "TXT",
        "name": "s1._domainkey.acme.example",
        "value": dkim,
    }
    assert kinds["spf"]["publish"] == {
        "type": "TXT",
        "name": "acme.example",
        "value": f"v=spf1 a:{SMTP_HOST} ~all",
    }
    assert kinds["dmarc"]["publish"]["name"] == "_dmarc.acme.example"
    assert kinds["dmarc"]["publish"]["value"].startswith("v=DMARC1; p=quarantine")
    assert kinds["mx"]["publish"]["type"] == "MX"


async def test_spf_is_evaluated_through_include_and_redirect(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    await setup(client)
    dns.add("acme.example", "TXT", "v=spf1 redirect=_spf.acme.example")
    dns.add("_spf.acme.example", "TXT", "v=spf1 include:relays.example -all")
    dns.add("relays.example", "TXT", f"v=spf1 a:{SMTP_HOST}/28 -all")

    spf = by_kind(await check(client))["spf"]

    assert spf["status"] == "pass", spf
    assert ("relays.example", "TXT") in dns.asked


async def test_spf_that_does_not_authorise_the_server_says_what_to_add(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    await setup(client)
    dns.add("acme.example", "TXT", "v=spf1 ip4:198.51.100.1 mx -all")

    spf = by_kind(await check(client))["spf"]

    assert spf["status"] == "fail"
    assert f"a:{SMTP_HOST}" in spf["detail"]
    assert spf["publish"]["value"] == f"v=spf1 ip4:198.51.100.1 mx a:{SMTP_HOST} -all"


async def test_a_stale_key_a_soft_policy_and_strict_alignment_are_reported(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    await setup(client, address="news@news.acme.example")
    dns.add("s1._domainkey.acme.example", "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEF")
    dns.add("_dmarc.news.acme.example", "TXT", "v=DMARC1; p=none; adkim=s")

    kinds = by_kind(await check(client, "news.acme.example"))

    assert kinds["dkim"]["status"] == "fail"
    assert "another public key" in kinds["dkim"]["detail"]
    assert kinds["dmarc"]["status"] == "warn"
    assert kinds["dmarc"]["publish"]["value"] == "v=DMARC1; p=quarantine; adkim=s"
    assert kinds["alignment"]["status"] == "fail"
    assert "adkim=s" in kinds["alignment"]["detail"]


async def test_a_parent_dmarc_record_applies_and_relaxed_alignment_passes(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    await setup(client, address="news@news.acme.example")
    dns.add("_dmarc.acme.example", "TXT", "v=DMARC1; p=quarantine")

    kinds = by_kind(await check(client, "news.acme.example"))

    assert kinds["dmarc"]["status"] == "pass"
    assert kinds["dmarc"]["name"] == "_dmarc.acme.example"
    assert kinds["alignment"]["status"] == "pass"
    assert "relaxed" in kinds["alignment"]["detail"]


async def test_a_failing_resolver_makes_checks_error_not_fail(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    await setup(client)
    dns.servfail.add("s1._domainkey.acme.example")
    dns.add("acme.example", "MX", "10 mx.acme.example.")

    kinds = by_kind(await check(client))

    assert kinds["dkim"]["status"] == "error"
    assert kinds["dkim"]["ok"] is False
    assert kinds["mx"]["status"] == "pass"


async def test_a_domain_without_key_or_server_fails_clearly(
    client: httpx.AsyncClient, dns: DnsServer
) -> None:
    await new_tenant(client)

    kinds = by_kind(await check(client, "other.example"))

    assert kinds["dkim"]["status"] == "fail" and "generate one" in kinds["dkim"]["detail"]
    assert kinds["spf"]["status"] == "fail"
    assert kinds["alignment"]["status"] == "fail"


async def test_not_a_domain_is_422(client: httpx.AsyncClient, dns: DnsServer) -> None:
    await new_tenant(client)

    r = await client.get(f"{T}/domains/not_a..domain/check", headers=ADMIN)

    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "domain"


@pytest.mark.parametrize("value", ["dns.example", "127.0.0.1:99999", "[::1", "1.2.3.4:x"])
def test_the_resolver_setting_must_be_an_address(value: str) -> None:
    with pytest.raises(ValueError, match="dns_resolver"):
        Settings(dns_resolver=value)


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1"])
def test_the_resolver_setting_takes_addresses(value: str) -> None:
    assert Settings(dns_resolver=value).dns_resolver == value
