"""The network policy: which outbound destinations Mailgate may connect to (SPEC.md section 8).

Rules, checked after DNS resolution on *every* resolved address:

* always refused: unspecified, "this network", link-local (including cloud metadata
  addresses), multicast, broadcast, documentation and other reserved ranges;
* refused unless the instance allow-list (``MAILGATE_ALLOWED_NETWORKS``) names them:
  loopback, private (RFC 1918, RFC 4193), shared address space (RFC 6598);
* everything else (public unicast) is allowed;
* port 25 is refused unless ``MAILGATE_ALLOW_PORT_25`` is set.

IP literals are parsed here, never by the system resolver: ``inet_aton`` accepts forms such
as ``2130706433``, ``0x7f.1`` or ``0177.0.0.1`` that would otherwise slip past a check on the
dotted-quad text. IPv6 addresses that embed an IPv4 address (mapped, compatible, NAT64,
6to4, Teredo) are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mailgate.errors import ConfigurationError, PolicyViolation

__all__ = [
    "DESTINATION_REFUSED",
    "PORT_25_REFUSED",
    "AddressClass",
    "IPAddress",
    "NetworkPolicy",
    "Resolver",
    "classify",
    "normalise_host",
    "parse_ip_literal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressClass(StrEnum):
    """What kind of destination an IP address is, for the network policy."""

    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    SHARED = "shared"  # RFC 6598 carrier-grade NAT space
    LINK_LOCAL = "link_local"
    METADATA = "metadata"  # cloud instance metadata services
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"
    RESERVED = "reserved"


def _table(
    rows: Sequence[tuple[str, AddressClass]],
) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, AddressClass], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in rows)


# Most specific first; the first match wins. Sources: RFC 6890 (special-purpose registries),
# IANA IPv4/IPv6 special-purpose address registries.
_IPV4_TABLE = _table(
    [
        ("255.255.255.255/32", AddressClass.BROADCAST),  # RFC 919 limited broadcast
        ("0.0.0.0/32", AddressClass.UNSPECIFIED),
        ("169.254.169.254/32", AddressClass.METADATA),  # AWS, GCP, Azure, OCI metadata
        ("100.100.100.200/32", AddressClass.METADATA),  # Alibaba Cloud metadata
        ("0.0.0.0/8", AddressClass.RESERVED),  # RFC 1122 3.2.1.3 "this network"
        ("127.0.0.0/8", AddressClass.LOOPBACK),  # RFC 1122 3.2.1.3
        ("10.0.0.0/8", AddressClass.PRIVATE),  # RFC 1918
        ("172.16.0.0/12", AddressClass.PRIVATE),  # RFC 1918
        ("192.168.0.0/16", AddressClass.PRIVATE),  # RFC 1918
        ("198.18.0.0/15", AddressClass.PRIVATE),  # RFC 2544 benchmarking, site-local in use
        ("100.64.0.0/10", AddressClass.SHARED),  # RFC 6598
        ("169.254.0.0/16", AddressClass.LINK_LOCAL),  # RFC 3927
        ("192.0.0.0/24", AddressClass.RESERVED),  # RFC 6890 IETF protocol assignments
        ("192.0.2.0/24", AddressClass.RESERVED),  # RFC 5737 documentation
        ("198.51.100.0/24", AddressClass.RESERVED),  # RFC 5737 documentation
        ("203.0.113.0/24", AddressClass.RESERVED),  # RFC 5737 documentation
        ("192.88.99.0/24", AddressClass.RESERVED),  # RFC 7526 deprecated 6to4 relays
        ("224.0.0.0/4", AddressClass.MULTICAST),  # RFC 5771
        ("240.0.0.0/4", AddressClass.RESERVED),  # RFC 1112 section 4
    ]
)

_IPV6_TABLE = _table(
    [
        ("::/128", AddressClass.UNSPECIFIED),  # RFC 4291 2.5.2
        ("::1/128", AddressClass.LOOPBACK),  # RFC 4291 2.5.3
        ("fd00:ec2::254/128", AddressClass.METADATA),  # AWS instance metadata over IPv6
        ("fe80::/10", AddressClass.LINK_LOCAL),  # RFC 4291 2.5.6
        ("fec0::/10", AddressClass.RESERVED),  # RFC 3879 deprecated site-local
        ("ff00::/8", AddressClass.MULTICAST),  # RFC 4291 2.7
        ("fc00::/7", AddressClass.PRIVATE),  # RFC 4193 unique local
        ("64:ff9b:1::/48", AddressClass.PRIVATE),  # RFC 8215 local-use NAT64
        ("100::/64", AddressClass.RESERVED),  # RFC 6666 discard-only
        ("2001:db8::/32", AddressClass.RESERVED),  # RFC 3849 documentation
        ("3fff::/20", AddressClass.RESERVED),  # RFC 9637 documentation
        ("2001:10::/28", AddressClass.RESERVED),  # RFC 4843 deprecated ORCHID
        ("2001:20::/28", AddressClass.RESERVED),  # RFC 7343 ORCHIDv2
    ]
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")  # RFC 4291 2.4: all else is reserved
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 2.5.5.1 (deprecated)
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it embeds one the network honours.

    IPv4-mapped (``::ffff:a.b.c.d``, RFC 4291 2.5.5.2), IPv4-compatible (``::a.b.c.d``),
    IPv4-translated (RFC 2765) and NAT64 well-known-prefix (``64:ff9b::a.b.c.d``, RFC 6052)
    addresses reach the embedded IPv4 host, so they are judged as that host.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return low32
    return None


def _lookup(
    address: IPAddress,
    table: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, AddressClass], ...],
) -> AddressClass | None:
    for network, kind in table:
        if address in network:
            return kind
    return None


def classify(address: IPAddress) -> AddressClass:
    """The class of ``address``; IPv6 forms that embed IPv4 take the class of the IPv4 host.

    6to4 (RFC 3056) and Teredo (RFC 4380) addresses are public only when every IPv4 address
    they carry is public.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return _lookup(address, _IPV4_TABLE) or AddressClass.PUBLIC
    address = ipaddress.IPv6Address(int(address))  # drop any %scope
    inner = embedded_ipv4(address)
    if inner is not None:
        return classify(inner)
    found = _lookup(address, _IPV6_TABLE)
    if found is not None:
        return found
    if address not in _GLOBAL_UNICAST_V6:
        return AddressClass.RESERVED
    carried: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        carried.append(address.sixtofour)
    if address.teredo is not None:
        carried.extend(address.teredo)
    for ipv4 in carried:
        kind = classify(ipv4)
        if kind is not AddressClass.PUBLIC:
            return kind
    return AddressClass.PUBLIC


# WHATWG URL "ends in a number": a last label of digits, or 0x and hex digits, makes the
# whole host an IPv4 literal, never a DNS name.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _ipv4_part(text: str) -> int | None:
    if text[:2] in ("0x", "0X"):
        digits, base = text[2:], 16
    elif len(text) > 1 and text.startswith("0"):
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    if not digits:
        return 0 if base == 16 else None
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Parse IPv4 the way ``inet_aton`` does: 1 to 4 parts, decimal, octal (0…) or hex (0x…).

    The last part fills the remaining bytes (``127.1`` is 127.0.0.1, ``2130706433`` is
    127.0.0.1). Returns ``None`` when ``text`` is not such a literal.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or any(not part for part in parts):
        return None
    values = [_ipv4_part(part) for part in parts]
    if any(value is None for value in values):
        return None
    numbers = [value for value in values if value is not None]
    *head, last = numbers
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(numbers)):
        return None
    result = last
    for index, value in enumerate(head):
        result += value << (8 * (3 - index))
    return ipaddress.IPv4Address(result)


def parse_ip_literal(text: str) -> IPAddress | None:
    """``text`` as an IP address when it is an IP literal in any notation, else ``None``.

    Accepts dotted quads and every ``inet_aton`` form, one trailing dot, bracketed IPv6 and
    IPv6 with a zone (``fe80::1%eth0``; the zone is dropped).
    """
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    if ":" in candidate:
        try:
            return ipaddress.IPv6Address(candidate.split("%", 1)[0])
        except ValueError:
            return None
    if candidate.endswith("."):
        candidate = candidate[:-1]
    return _parse_ipv4(candidate)


def normalise_host(host: str) -> str | IPAddress | None:
    """A configured host as an IP address, or as a lower-case ASCII host name.

    Returns ``None`` for anything that is neither: empty or over-long names, whitespace or
    control characters, invalid labels, and names that end in a number but are not a valid
    IPv4 literal (the system resolver would read those as addresses). Internationalised
    names are converted with IDNA.
    """
    if not host or any(ch.isspace() or not ch.isprintable() for ch in host):
        return None
    literal = parse_ip_literal(host)
    if literal is not None:
        return literal
    if ":" in host or host.startswith("["):
        return None
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    name = name.removesuffix(".")
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]) or len(name) > 253:
        return None
    if not all(_HOST_LABEL.match(label) for label in labels):
        return None
    return name


PORT_25_REFUSED = "port_25_refused"
DESTINATION_REFUSED = "destination_refused"

# One message for every refused destination: it must not reveal which resolved address was
# internal, nor whether a name resolved at all.
_DESTINATION_MESSAGE = (
    "The destination is refused by the network policy: Mailgate does not connect to "
    "loopback, private, link-local, metadata or reserved addresses. An administrator can "
    "allow specific private networks or host:port pairs with MAILGATE_ALLOWED_NETWORKS."
)

# RFC 5321 port 25 is the relay (MX) port; submission uses 587 (RFC 6409) or 465 (RFC 8314).
_PORT_25_MESSAGE = (
    "Port 25 is refused: outbound SMTP relay on port 25 is blocked to protect this "
    "instance's IP reputation and prevent abuse, and many networks block it anyway. Use a "
    "submission port (587 with STARTTLS or 465 with TLS), or have an administrator set "
    "MAILGATE_ALLOW_PORT_25=true."
)

_ALLOWABLE = frozenset({AddressClass.LOOPBACK, AddressClass.PRIVATE, AddressClass.SHARED})


class Resolver(Protocol):
    """Resolves a host name to IP address strings, in the order they should be tried.

    Raises ``socket.gaierror`` (an ``OSError``) when the name does not resolve.
    """

    async def resolve(self, host: str, port: int) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class _HostPort:
    """An allow-list entry naming exactly one host (name or address) and one port."""

    host: str | IPAddress
    port: int


def _parse_entry(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | _HostPort:
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    host, colon, port_text = text.rpartition(":")
    if colon and port_text.isdigit() and 0 < int(port_text) < 65536 and host:
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        normalised = normalise_host(host)
        if normalised is not None:
            return _HostPort(normalised, int(port_text))
    raise ConfigurationError(
        f"MAILGATE_ALLOWED_NETWORKS: {entry!r} is neither a CIDR (10.0.0.0/8, fd00::/8) "
        "nor a host:port pair (127.0.0.1:2525, smtp.internal:587, [::1]:2525)"
    )


def _refused() -> PolicyViolation:
    return PolicyViolation(_DESTINATION_MESSAGE, code=DESTINATION_REFUSED)


class NetworkPolicy:
    """The instance's outbound network policy.

    ``allowed`` holds CIDRs (``10.0.0.0/8``; a bare address is a single-host network) and
    ``host:port`` pairs (``127.0.0.1:2525``, ``smtp.internal:587``, ``[::1]:2525``). A CIDR
    lets loopback, private and shared addresses inside it through on any port; a pair lets
    exactly that host and port through (a name pair matches the host name as configured on
    the server, whatever it resolves to). No entry can let an always-refused address through.
    Invalid entries raise :class:`~mailgate.errors.ConfigurationError`.
    """

    def __init__(self, allowed: Iterable[str] = (), *, allow_port_25: bool = False) -> None:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        pairs: list[_HostPort] = []
        for entry in allowed:
            parsed = _parse_entry(entry)
            if isinstance(parsed, _HostPort):
                pairs.append(parsed)
            else:
                networks.append(parsed)
        self._networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(networks)
        self._pairs: frozenset[_HostPort] = frozenset(pairs)
        self.allow_port_25 = allow_port_25

    def check_port(self, port: int) -> None:
        """Refuse ports outside 1..65535, and port 25 unless the instance allows it."""
        if not 0 < port < 65536:
            raise _refused()
        if port == 25 and not self.allow_port_25:
            raise PolicyViolation(_PORT_25_MESSAGE, code=PORT_25_REFUSED)

    def is_allowed(self, address: IPAddress, port: int, *, host: str | None = None) -> bool:
        """Whether ``address:port`` may be dialled when reached through the name ``host``."""
        kind = classify(address)
        if kind is AddressClass.PUBLIC:
            return True
        if kind not in _ALLOWABLE:
            return False
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        for candidate in candidates:
            if _HostPort(candidate, port) in self._pairs:
                return True
            if any(candidate in network for network in self._networks):
                return True
        return host is not None and _HostPort(host, port) in self._pairs

    def check_address(
        self, address: str | IPAddress, port: int, *, host: str | None = None
    ) -> IPAddress:
        """Check one destination; return it parsed or raise :class:`PolicyViolation`.

        ``address`` may be text in any IP notation (see :func:`parse_ip_literal`); ``host``
        is the name it was resolved from, which ``host:port`` allow-list entries match.
        """
        self.check_port(port)
        parsed = parse_ip_literal(address) if isinstance(address, str) else address
        if parsed is None:
            raise _refused()
        name = normalise_host(host) if host is not None else None
        if not self.is_allowed(parsed, port, host=name if isinstance(name, str) else None):
            raise _refused()
        return parsed

    async def resolve_and_check(
        self, host: str, port: int, *, resolver: Resolver
    ) -> list[IPAddress]:
        """Resolve ``host`` and check every address; return them in resolution order.

        An IP literal in any notation is used as it is, without asking ``resolver``. The
        whole destination is refused when *any* resolved address is refused, so a name that
        mixes public and internal addresses cannot be used to reach the internal one.
        Raises :class:`PolicyViolation` (codes ``port_25_refused``, ``destination_refused``)
        or ``socket.gaierror`` when the name does not resolve.
        """
        self.check_port(port)
        target = normalise_host(host)
        if target is None:
            raise _refused()
        if not isinstance(target, str):
            return [self.check_address(target, port)]
        resolved = await resolver.resolve(target, port)
        if not resolved:
            raise socket.gaierror(socket.EAI_NONAME, f"{target} has no address")
        checked: dict[IPAddress, None] = {}
        for text in resolved:
            checked.setdefault(self.check_address(text, port, host=target), None)
        return list(checked)
