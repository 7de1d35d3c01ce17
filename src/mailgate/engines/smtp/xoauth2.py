"""XOAUTH2 for the SMTP engine: "refresh once on rejection" around :class:`SmtpEngine`.

Google and Microsoft reject an expired or revoked access token at AUTH (``535 5.7.8``,
or ``334`` with a JSON error then ``535``; developers.google.com/gmail/imap/xoauth2-protocol).
The SMTP engine reports that as AUTH_FAILED at phase ``auth`` with the server's reply code.
:class:`XOAuth2Engine` then drops the token and delivers once more on a new connection, which
fetches a fresh one; only a second rejection stands. AUTH precedes MAIL FROM, so nothing of
the message was sent by the first attempt and repeating it cannot duplicate mail.

A token-endpoint refusal (``invalid_grant``...) is AUTH_FAILED too, but decided locally
(no reply code): it is not retried, since the same credentials would be refused again.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol, runtime_checkable

from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind
from mailgate.domain.outcomes import Phase
from mailgate.engines.base import Clock, Engine, TokenSource
from mailgate.engines.config import Secret
from mailgate.engines.probe_report import ProbeReport

__all__ = ["InvalidatingTokenSource", "XOAuth2Engine"]


@runtime_checkable
class InvalidatingTokenSource(Protocol):
    """A token source that can drop a token the server rejected (see :mod:`.oauth`)."""

    async def access_token(self) -> Secret: ...

    def invalidate(self, token: Secret | None = None) -> None: ...


class XOAuth2Engine:
    """Wraps an SMTP engine that authenticates with ``tokens``; see the module docstring.

    ``owns_tokens``: close ``tokens`` (when it has ``aclose``) together with the engine.
    """

    def __init__(self, inner: Engine, tokens: TokenSource, *, owns_tokens: bool = False) -> None:
        self.inner = inner
        self.tokens = tokens
        self._owns_tokens = owns_tokens

    def __repr__(self) -> str:
        return f"XOAuth2Engine({self.inner!r})"

    def __getattr__(self, name: str) -> object:
        # connections_opened, config, settings...: what the SMTP engine exposes.
        return getattr(self.inner, name)

    async def deliver(self, envelope: Envelope, data: bytes, /) -> DeliveryResult:
        """Deliver through the SMTP engine; repeat once after a rejected access token."""
        result = await self.inner.deliver(envelope, data)
        if not _token_rejected(result) or not isinstance(self.tokens, InvalidatingTokenSource):
            return result
        self.tokens.invalidate()
        retried = await self.inner.deliver(envelope, data)
        transcript = "\n".join(
            [result.transcript, "* the access token was rejected; retrying with a new one"]
            + ([retried.transcript] if retried.transcript else [])
        )
        details = dict(retried.details)
        details["token_refreshed"] = "true"  # noqa: S105 - a flag, not a secret
        return dataclasses.replace(retried, transcript=transcript, details=details)

    async def probe(self, *, clock: Clock = time.perf_counter) -> ProbeReport:
        """The SMTP engine's probe (it authenticates with the same token source)."""
        return await self.inner.probe(clock=clock)

    async def aclose(self) -> None:
        """Close the SMTP engine, and the token source when it is owned."""
        await self.inner.aclose()
        if self._owns_tokens:
            closer = getattr(self.tokens, "aclose", None)
            if closer is not None:
                await closer()


def _token_rejected(result: DeliveryResult) -> bool:
    """AUTH_FAILED during AUTH with a reply from the server (not a local decision)."""
    return (
        result.kind is OutcomeKind.AUTH_FAILED
        and result.details.get("phase") == Phase.AUTH.value
        and result.code is not None
    )
