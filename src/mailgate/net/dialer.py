"""The dialer seam: how engines, the probe and IMAP open outbound TCP connections.

Production code uses the guarded dialer (network policy: resolve, check every address, pin
the connection to the checked address). Tests may pass a dialer that records attempts.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol


class Dialer(Protocol):
    """Opens a TCP connection and returns the connected, non-blocking socket.

    Raises :class:`mailgate.errors.PolicyViolation` when the destination is refused (and
    then no connection attempt is made), ``TimeoutError`` when ``timeout`` expires and
    ``OSError`` for other connection failures.
    """

    async def connect(self, host: str, port: int, *, timeout: float) -> socket.socket: ...


class DirectDialer:
    """Connects without any network policy. For tests and trusted tools only."""

    async def connect(self, host: str, port: int, *, timeout: float) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        last: OSError | None = None
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, address)
            except (OSError, TimeoutError) as exc:
                sock.close()
                if isinstance(exc, TimeoutError):
                    raise
                last = exc
                continue
            return sock
        raise last or OSError(f"{host} did not resolve to any address")
