"""A DNS client for the domain checks: TXT, MX and address look-ups through one resolver.

The resolver is the instance setting ``dns_resolver`` (``host``, ``host:port`` or
``[v6]:port``, an IP address), else the system's (``/etc/resolv.conf``). Queries go over
UDP with EDNS (1232-octet answers, enough for a 4096-bit DKIM key) and fall back to TCP
when an answer is truncated (dnspython does both).

"No such name" and "no record of that type" are answers: an empty list. A resolver that
fails (SERVFAIL, REFUSED, no answer in time) raises :class:`DnsUnavailable`, so a check
can say "could not be checked" instead of "missing".
"""

from __future__ import annotations

import ipaddress

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailgate.errors import ConfigurationError, MailgateError

__all__ = ["DnsClient", "DnsUnavailable", "parse_resolver"]


class DnsUnavailable(MailgateError):
    """The resolver gave no usable answer (failure or timeout) for ``name``."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"DNS look-up of {rdtype} {name} failed: {reason}")
        self.name = name
        self.rdtype = rdtype


def parse_resolver(text: str) -> tuple[str, int]:
    """``(ip, port)`` of a resolver address; :class:`ConfigurationError` if it is not one."""
    raw = text.strip()
    host, port = raw, 53
    if raw.startswith("["):
        end = raw.find("]")
        host, rest = raw[1:end], raw[end + 1 :]
        if end < 0:
            raise ConfigurationError(f"dns_resolver {text!r} is not an address")
        if rest and not rest.startswith(":"):
            raise ConfigurationError(f"dns_resolver {text!r} is not an address")
        if rest:
            port = _port(text, rest[1:])
    elif raw.count(":") == 1:
        host, _, number = raw.partition(":")
        port = _port(text, number)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigurationError(
            f"dns_resolver {text!r} must be an IP address (optionally with :port)"
        ) from None
    return host, port


def _port(text: str, value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigurationError(f"dns_resolver {text!r} has no valid port")
    return int(value)


class DnsClient:
    """Look-ups through one resolver; ``timeout`` bounds each look-up (retries included)."""

    def __init__(self, resolver: str | None = None, *, timeout: float = 5.0) -> None:
        if resolver:
            ip, port = parse_resolver(resolver)
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [ip]
            self._resolver.port = port
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.use_edns(0, 0, 1232)
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 2.0)
        self.queries = 0

    async def _answer(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        self.queries += 1
        try:
            return await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.resolver.LifetimeTimeout:
            raise DnsUnavailable(name, rdtype, "no answer in time") from None
        except dns.resolver.NoNameservers:
            raise DnsUnavailable(name, rdtype, "the resolver answered with an error") from None
        except dns.exception.DNSException as exc:
            raise DnsUnavailable(name, rdtype, type(exc).__name__) from None

    async def txt(self, name: str) -> list[str]:
        """Each TXT record of ``name``, its strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        answer = await self._answer(name, "TXT")
        if answer is None:
            return []
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """``(preference, host)`` of each MX record, most preferred first."""
        answer = await self._answer(name, "MX")
        if answer is None:
            return []
        found = [
            (int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True).lower())
            for rdata in answer
        ]
        return sorted(found)

    async def addresses(self, name: str) -> list[str]:
        """The IPv4 then IPv6 addresses of ``name`` (two look-ups)."""
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self._answer(name, rdtype)
            if answer is not None:
                found += [rdata.to_text() for rdata in answer]
        return found

    async def a(self, name: str) -> list[str]:
        """The IPv4 addresses of ``name`` (SPF ``exists``)."""
        answer = await self._answer(name, "A")
        return [] if answer is None else [rdata.to_text() for rdata in answer]
