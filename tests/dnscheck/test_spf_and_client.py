"""The DNS client and the SPF evaluator against a loopback DNS server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mailgate.dnscheck.client import DnsClient, DnsUnavailable, parse_resolver
from mailgate.dnscheck.spf import check_host
from mailgate.errors import ConfigurationError
from tests.support.dns_server import DnsServer


@pytest.fixture
async def zone() -> AsyncIterator[DnsServer]:
    async with DnsServer() as server:
        yield server


def client(zone: DnsServer) -> DnsClient:
    return DnsClient(zone.address, timeout=2.0)


async def test_txt_joins_the_strings_of_a_long_record(zone: DnsServer) -> None:
    long = "v=DKIM1; k=rsa; p=" + "A" * 600
    zone.add("s1._domainkey.example.com", "TXT", long)

    assert await client(zone).txt("s1._domainkey.example.com") == [long]
    assert await client(zone).txt("nothing.example.com") == []


async def test_mx_is_sorted_by_preference(zone: DnsServer) -> None:
    zone.add("example.com", "MX", "20 b.example.com.", "10 a.example.com.")

    assert await client(zone).mx("example.com") == [(10, "a.example.com"), (20, "b.example.com")]


async def test_servfail_is_unavailable_not_empty(zone: DnsServer) -> None:
    zone.servfail.add("broken.example")

    with pytest.raises(DnsUnavailable, match=r"broken\.example"):
        await client(zone).txt("broken.example")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:54", ("::1", 54)),
        ("::1", ("::1", 53)),
    ],
)
def test_resolver_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize("text", ["dns.example", "1.2.3.4:0", "[::1", "[::1]x"])
def test_resolver_address_errors(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_resolver(text)


@pytest.mark.parametrize(
    ("record", "ip", "result"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.7", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.7", "fail"),
        ("v=spf1 ip6:2001:db8::/32 ~all", "2001:db8::5", "pass"),
        ("v=spf1 ip6:2001:db8::/32 ~all", "192.0.2.7", "softfail"),
        ("v=spf1 a -all", "192.0.2.80", "pass"),
        ("v=spf1 a:host.example.com/24 -all", "192.0.2.200", "pass"),
        ("v=spf1 mx ?all", "192.0.2.90", "pass"),
        ("v=spf1 -a +all", "192.0.2.80", "fail"),
        ("v=spf1 exists:ok.example.com -all", "203.0.113.1", "pass"),
        ("v=spf1 include:missing.example.com -all", "192.0.2.1", "permerror"),
        ("v=spf1 redirect=inc.example.com", "203.0.113.9", "pass"),
        ("v=spf1 ip4:10.0.0.1", "192.0.2.1", "neutral"),
    ],
)
async def test_check_host(zone: DnsServer, record: str, ip: str, result: str) -> None:
    zone.add("example.com", "TXT", record)
    zone.add("example.com", "A", "192.0.2.80")
    zone.add("host.example.com", "A", "192.0.2.1")
    zone.add("example.com", "MX", "10 mx.example.com.")
    zone.add("mx.example.com", "A", "192.0.2.90")
    zone.add("ok.example.com", "A", "127.0.0.2")
    zone.add("inc.example.com", "TXT", "v=spf1 ip4:203.0.113.0/24 -all")

    assert (await check_host(client(zone), ip, "example.com")).result == result


async def test_more_than_ten_lookups_is_permerror(zone: DnsServer) -> None:
    zone.add("example.com", "TXT", "v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(11)))

    outcome = await check_host(client(zone), "192.0.2.1", "example.com")

    assert outcome.result == "permerror"
    assert "10" in outcome.notes[-1]


async def test_two_spf_records_are_permerror(zone: DnsServer) -> None:
    zone.add("example.com", "TXT", "v=spf1 -all", "v=spf1 +all")

    assert (await check_host(client(zone), "192.0.2.1", "example.com")).result == "permerror"


async def test_a_failing_include_is_temperror(zone: DnsServer) -> None:
    zone.add("example.com", "TXT", "v=spf1 include:down.example.net -all")
    zone.servfail.add("down.example.net")

    assert (await check_host(client(zone), "192.0.2.1", "example.com")).result == "temperror"
