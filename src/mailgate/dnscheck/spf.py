"""SPF evaluation (RFC 7208 ``check_host``) for one IP address and one domain.

Mechanisms ``all``, ``ip4``, ``ip6``, ``a``, ``mx``, ``include``, ``exists`` and ``ptr``
(never matches: it is deprecated, section 5.5), the ``redirect`` modifier and qualifiers
``+ - ~ ?``. At most 10 mechanisms or modifiers that look DNS up (section 4.6.4); past
that the result is ``permerror``, as receivers see it. Macros (section 7) are not expanded:
a mechanism holding one does not match, and the result says so.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from mailgate.dnscheck.client import DnsUnavailable

__all__ = ["SpfResult", "check_host", "spf_records"]

MAX_LOOKUPS = 10
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_COUNTED = ("a", "mx", "include", "exists", "ptr")


class Lookups(Protocol):
    async def txt(self, name: str) -> list[str]: ...

    async def mx(self, name: str) -> list[tuple[int, str]]: ...

    async def addresses(self, name: str) -> list[str]: ...

    async def a(self, name: str) -> list[str]: ...


@dataclass
class SpfResult:
    """``result`` is one of pass, fail, softfail, neutral, none, permerror, temperror;
    ``matched`` the mechanism that decided it (``include:…`` for a nested match)."""

    result: str
    matched: str | None = None
    notes: list[str] = field(default_factory=list)


def spf_records(txts: list[str]) -> list[str]:
    """The SPF records among ``txts`` (section 4.5: ``v=spf1`` then a space or the end)."""
    out = []
    for txt in txts:
        text = txt.strip()
        if text.lower() == "v=spf1" or text.lower().startswith("v=spf1 "):
            out.append(text)
    return out


class _Budget:
    def __init__(self) -> None:
        self.used = 0

    def spend(self) -> bool:
        self.used += 1
        return self.used <= MAX_LOOKUPS


async def check_host(dns: Lookups, ip: str, domain: str) -> SpfResult:
    """What a receiver's SPF check says of mail from ``ip`` for ``domain``."""
    return await _check(dns, ipaddress.ip_address(ip), domain.lower().rstrip("."), _Budget())


async def _check(
    dns: Lookups, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, domain: str, budget: _Budget
) -> SpfResult:
    try:
        records = spf_records(await dns.txt(domain))
    except DnsUnavailable as exc:
        return SpfResult("temperror", notes=[str(exc)])
    if not records:
        return SpfResult("none", notes=[f"{domain} has no SPF record"])
    if len(records) > 1:
        return SpfResult("permerror", notes=[f"{domain} has {len(records)} SPF records"])
    terms = records[0].split()[1:]
    redirect: str | None = None
    notes: list[str] = []
    for term in terms:
        name, sep, value = term.partition("=")
        if sep and ":" not in name and "/" not in name:
            if name.lower() == "redirect":
                redirect = value
            continue  # exp= and unknown modifiers
        qualifier = "+"
        if term[0] in _QUALIFIERS:
            qualifier, term = term[0], term[1:]
        mechanism, _, argument = term.partition(":")
        mechanism = mechanism.lower()
        base = mechanism.split("/", 1)[0]
        if base in _COUNTED and not budget.spend():
            return SpfResult("permerror", notes=[*notes, "more than 10 DNS-querying terms"])
        if "%" in term:
            notes.append(f"{term}: macros are not expanded here")
            continue
        try:
            outcome = await _matches(dns, ip, domain, base, mechanism, argument, budget)
        except DnsUnavailable as exc:
            return SpfResult("temperror", notes=[*notes, str(exc)])
        except ValueError:
            return SpfResult("permerror", notes=[*notes, f"{term!r} is not valid"])
        if isinstance(outcome, SpfResult):
            return outcome
        if outcome:
            return SpfResult(_QUALIFIERS[qualifier], matched=term, notes=notes)
    if redirect is not None:
        if not budget.spend():
            return SpfResult("permerror", notes=[*notes, "more than 10 DNS-querying terms"])
        inner = await _check(dns, ip, redirect.lower(), budget)
        if inner.result == "none":
            return SpfResult("permerror", notes=[*notes, f"redirect={redirect} has no SPF"])
        inner.notes = notes + inner.notes
        return inner
    return SpfResult("neutral", notes=notes)


async def _matches(
    dns: Lookups,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    domain: str,
    base: str,
    mechanism: str,
    argument: str,
    budget: _Budget,
) -> bool | SpfResult:
    """Whether one mechanism matches ``ip``; an :class:`SpfResult` ends the evaluation."""
    if base == "all":
        return True
    if base in ("ip4", "ip6"):
        network = ipaddress.ip_network(argument, strict=False)
        return ip.version == network.version and ip in network
    target, cidr4, cidr6 = _target(argument or "", mechanism, domain)
    if base == "a":
        return _within(ip, await dns.addresses(target), cidr4, cidr6)
    if base == "mx":
        hosts = [host for _, host in (await dns.mx(target))[:10]]
        for host in hosts:
            if _within(ip, await dns.addresses(host), cidr4, cidr6):
                return True
        return False
    if base == "include":
        inner = await _check(dns, ip, target, budget)
        if inner.result == "pass":
            return True
        if inner.result in ("temperror", "permerror"):
            return inner
        if inner.result == "none":
            return SpfResult("permerror", notes=[f"include:{target} has no SPF record"])
        return False
    if base == "exists":
        return bool(await dns.a(target))
    if base == "ptr":
        return False
    raise ValueError(mechanism)


def _target(argument: str, mechanism: str, domain: str) -> tuple[str, int | None, int | None]:
    """The domain of ``a``/``mx``/``include``/``exists`` and the dual CIDR lengths."""
    text = argument or ""
    if not argument and "/" in mechanism:
        text = "/" + mechanism.split("/", 1)[1]
    cidr4 = cidr6 = None
    if "//" in text:
        text, _, six = text.partition("//")
        cidr6 = int(six)
    if "/" in text:
        text, _, four = text.partition("/")
        cidr4 = int(four)
    return (text.lower().rstrip(".") or domain), cidr4, cidr6


def _within(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    addresses: list[str],
    cidr4: int | None,
    cidr6: int | None,
) -> bool:
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address.version != ip.version:
            continue
        length = cidr4 if address.version == 4 else cidr6
        prefix = length if length is not None else address.max_prefixlen
        if ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False):
            return True
    return False
