"""The guarded dialer: every outbound TCP connection of Mailgate goes through it.

It resolves the configured host once, checks every resolved address against the
:class:`~mailgate.net.policy.NetworkPolicy`, and connects to the first checked address
only. The connection is thereby pinned to the address that was checked: a second DNS answer
(DNS rebinding) cannot redirect it. Callers still verify TLS against the configured host
name, since they pass that name as ``server_hostname``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Protocol

from mailgate.net.policy import IPAddress, NetworkPolicy, Resolver


class SystemResolver:
    """Resolves with the operating system's resolver (``getaddrinfo``) on the running loop.

    Only host names reach it: the policy parses IP literals itself.
    """

    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        seen: dict[str, None] = {}
        for _family, _type, _proto, _canon, sockaddr in infos:
            seen.setdefault(str(sockaddr[0]), None)
        return list(seen)


class Connector(Protocol):
    """Opens a TCP connection to one already-checked address; the last step of dialling.

    Returns a connected, non-blocking socket; raises ``OSError`` on failure. It is a seam
    so that tests can record connection attempts.
    """

    async def connect(self, address: IPAddress, port: int) -> socket.socket: ...


class SocketConnector:
    """Connects a non-blocking socket with the running loop."""

    async def connect(self, address: IPAddress, port: int) -> socket.socket:
        loop = asyncio.get_running_loop()
        sockaddr: tuple[str, int] | tuple[str, int, int, int]
        if isinstance(address, ipaddress.IPv4Address):
            family, sockaddr = socket.AF_INET, (str(address), port)
        else:
            family, sockaddr = socket.AF_INET6, (str(address), port, 0, 0)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except BaseException:
            # Also on cancellation (the dialer's timeout): never leak the half-open socket.
            sock.close()
            raise
        return sock


class GuardedDialer:
    """A :class:`~mailgate.net.dialer.Dialer` that enforces the network policy.

    ``connect`` raises :class:`~mailgate.errors.PolicyViolation` before any connection
    attempt when the destination is refused, ``socket.gaierror`` when the name does not
    resolve, ``TimeoutError`` when resolution and connection together exceed ``timeout``,
    and ``OSError`` for other connection failures. Only the first resolved address is
    dialled; there is no fallback to the others, so what was checked is what is reached.
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.policy = policy
        self.resolver: Resolver = resolver or SystemResolver()
        self.connector: Connector = connector or SocketConnector()

    async def connect(self, host: str, port: int, *, timeout: float) -> socket.socket:
        async with asyncio.timeout(timeout):
            addresses = await self.policy.resolve_and_check(host, port, resolver=self.resolver)
            return await self.connector.connect(addresses[0], port)
