"""A bounded pool of SMTP sessions to one server.

At most ``size`` sessions exist at once, busy or idle. Each concurrent delivery holds its
own session; an idle session is reused while it is healthy, recently used and below its
message budget, otherwise it is closed and a new one opened. A session that saw any error
is never returned to the pool (the caller passes ``reusable=False``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from mailgate.engines.smtp.session import SmtpSession
from mailgate.engines.smtp.transcript import Transcript

Opener = Callable[[Transcript], Awaitable[SmtpSession]]


class SessionPool:
    """Hands out sessions, at most ``size`` at a time; see the module docstring."""

    def __init__(self, opener: Opener, *, size: int) -> None:
        if size < 1:
            raise ValueError("a pool needs room for at least one session")
        self._opener = opener
        self._slots = asyncio.Semaphore(size)
        self._idle: list[SmtpSession] = []
        self._closing: set[asyncio.Task[bool]] = set()
        self._closed = False
        self.opened = 0

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def acquire(self, transcript: Transcript) -> tuple[SmtpSession, bool]:
        """A session for one transaction and whether it was reused.

        Opening a new session may raise :class:`~mailgate.engines.smtp.diagnose.SmtpError`;
        the slot is then given back. Every successful acquire must be paired with
        :meth:`release`.
        """
        if self._closed:
            raise RuntimeError("the session pool is closed")
        await self._slots.acquire()
        try:
            now = time.monotonic()
            while self._idle:
                session = self._idle.pop()
                if session.usable(now=now):
                    transcript.tls_version = session.wire.tls_version()
                    transcript.note(
                        f"reusing connection (message {session.uses + 1} on it, "
                        f"{session.wire.tls_version() or 'no TLS'})"
                    )
                    return session, True
                self._retire(session)
            session = await self._opener(transcript)
            self.opened += 1
            return session, False
        except BaseException:
            self._slots.release()
            raise

    def release(self, session: SmtpSession, *, reusable: bool) -> None:
        """Give ``session`` back: kept for reuse if ``reusable`` and healthy, else closed."""
        session.last_used = time.monotonic()
        if reusable and not self._closed and session.wire.is_open:
            self._idle.append(session)
        else:
            session.abort()
        self._slots.release()

    async def aclose(self) -> None:
        """Close idle sessions politely (QUIT) and refuse further acquires."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(session.quit() for session in idle))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _retire(self, session: SmtpSession) -> None:
        """Close an expired idle session in the background (QUIT, then close)."""
        if not session.wire.is_open:
            session.abort()
            return
        task = asyncio.get_running_loop().create_task(session.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
