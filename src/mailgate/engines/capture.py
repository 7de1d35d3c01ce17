"""The capture engine: accepts every message and keeps the latest ones in memory.

It is the in-memory twin of the SMTP engine (ARCHITECTURE.md, house style 4): what
``make run`` and most tests use. The worker stores the raw message itself; this engine only
keeps the last ``keep`` deliveries for inspection.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind
from mailgate.engines.base import Clock
from mailgate.engines.probe_report import (
    ProbeError,
    ProbeErrorCode,
    ProbeReport,
    ProbeSecurity,
    hint_for,
)

DEFAULT_KEEP = 100
CAPTURED_REPLY = "captured"


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One message handed to the capture engine."""

    envelope: Envelope
    data: bytes
    captured_at: float  # time.time()


class CaptureEngine:
    """Accepts everything (SENT, 250, "captured"); remembers the last ``keep`` messages."""

    def __init__(self, *, keep: int = DEFAULT_KEEP) -> None:
        if keep < 0:
            raise ValueError("keep must not be negative")
        self._messages: deque[CapturedMessage] = deque(maxlen=keep or None)
        self._keep = keep
        self._closed = False
        self.delivered = 0

    @property
    def messages(self) -> tuple[CapturedMessage, ...]:
        """The captured messages, oldest first."""
        return tuple(self._messages) if self._keep else ()

    def clear(self) -> None:
        """Forget every captured message."""
        self._messages.clear()

    async def deliver(self, envelope: Envelope, data: bytes, /) -> DeliveryResult:
        """Capture ``data``; every recipient is SENT with code 250."""
        if self._closed:
            raise RuntimeError("the capture engine is closed")
        started = time.perf_counter()
        if self._keep:
            self._messages.append(CapturedMessage(envelope, bytes(data), time.time()))
        self.delivered += 1
        return DeliveryResult.whole(
            envelope,
            OutcomeKind.SENT,
            code=250,
            reply=CAPTURED_REPLY,
            transcript=f"* captured [{len(data)} bytes] for {len(envelope.rcpt_to)} recipient(s)",
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    async def probe(self, *, clock: Clock = time.perf_counter) -> ProbeReport:
        """There is no server to test: ``engine_not_supported``."""
        code = ProbeErrorCode.ENGINE_NOT_SUPPORTED
        hint = hint_for(code, host="", port=0, min_tls="1.2")
        error = ProbeError(code, "The capture engine cannot be probed.", hint)
        return ProbeReport(security=ProbeSecurity.INSECURE, steps=(), error=error)

    async def aclose(self) -> None:
        """Nothing to release; further deliveries raise."""
        self._closed = True
