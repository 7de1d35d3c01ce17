"""The engine seam: one interface for every outbound transport (ARCHITECTURE.md).

An engine delivers one composed message (CRLF bytes) to the envelope's recipients and
returns a :class:`~mailgate.domain.delivery.DeliveryResult`. It never raises for a delivery
outcome: refusals, timeouts, TLS problems and lost connections are results. Exceptions are
for misconfiguration (:class:`~mailgate.errors.ConfigurationError`, raised when the engine
is built) and for bugs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mailgate.domain.delivery import DeliveryResult, Envelope
from mailgate.engines.config import Secret
from mailgate.engines.probe_report import ProbeReport

#: Times the steps of a probe report (seconds, monotonic).
Clock = Callable[[], float]


@runtime_checkable
class Engine(Protocol):
    """An outbound transport bound to one server configuration."""

    async def deliver(self, envelope: Envelope, data: bytes, /) -> DeliveryResult:
        """Attempt delivery of ``data`` to ``envelope`` once; never raises for an outcome.

        ``data`` is the complete RFC 5322 message with CRLF line endings. Concurrent calls
        are allowed; the engine bounds its own connections.
        """
        ...

    async def probe(self, *, clock: Clock = ...) -> ProbeReport:
        """Test the connection and the credentials as :meth:`deliver` would use them.

        Sends no message; never raises for a failure of the server or the network (the
        report carries it). ``clock`` times the report's steps.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and other resources; the engine is unusable afterwards."""
        ...


class TokenSource(Protocol):
    """Supplies OAuth access tokens for SMTP XOAUTH2 (RFC 7628-style bearer tokens).

    ``access_token`` raises :class:`~mailgate.errors.ConfigurationError` when the
    credentials are refused by the provider, ``OSError``/``TimeoutError`` when the provider
    cannot be reached.
    """

    async def access_token(self) -> Secret: ...
