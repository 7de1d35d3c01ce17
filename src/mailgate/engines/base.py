"""The engine seam: one interface for every outbound transport (ARCHITECTURE.md).

An engine delivers one composed message (CRLF bytes) to the envelope's recipients and
returns a :class:`~mailgate.domain.delivery.DeliveryResult`. It never raises for a delivery
outcome: refusals, timeouts, TLS problems and lost connections are results. Exceptions are
for misconfiguration (:class:`~mailgate.errors.ConfigurationError`, raised when the engine
is built) and for bugs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mailgate.domain.delivery import DeliveryResult, Envelope
from mailgate.engines.config import Secret
from mailgate.engines.probe_report import ProbeReport

#: Times the steps of a probe report (seconds, monotonic).
Clock = Callable[[], float]


@dataclass(eq=False, slots=True)
class OutcomeRecording:
    """How the caller of :meth:`Engine.deliver` records its outcome (see
    :data:`outcome_recording`)."""

    #: Resolved by the caller once the outcome of this delivery is committed.
    recorded: asyncio.Future[None]
    #: Called by the engine when a delivery waits for outcomes to be recorded: the caller
    #: then records what it has at once instead of gathering more.
    hurry: Callable[[], None]


#: Set by a caller that records outcomes (the worker) in the task that calls
#: :meth:`Engine.deliver`. An engine that holds connections makes a delivery wait, before it
#: hands its content to the server, until at most one message per connection has been handed
#: over with its outcome not yet recorded; a process killed at any moment has then delivered
#: at most that many messages it will deliver again. Unset, nothing waits.
outcome_recording: ContextVar[OutcomeRecording | None] = ContextVar(
    "mailgate_outcome_recording", default=None
)


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
