"""A bounded pool of SMTP sessions to one server, with envelopes pipelined across messages.

At most ``size`` sessions exist at once, busy or idle. Each concurrent delivery holds its
own session; an idle session is reused while it is healthy, recently used and below its
message budget, otherwise it is closed and a new one opened. A session that saw any error
is never returned to the pool (the caller passes ``reusable=False``).

Deliveries that find every session busy wait in line (first come, first served) and may give
a *preparer*: a function that, for a given session, returns the delivery's envelope commands
(MAIL, RCPT..., DATA) as bytes. A delivery about to write its content asks :meth:`follow`
for the next envelope and writes both at once, behind the final dot (RFC 2920 section 3.1:
DATA ends a group, and a new transaction may begin right after the content). The waiting
delivery is then handed that session with its envelope already on the wire, and only reads
the replies: one write per message instead of two. Whatever happens to the first message
(a 421, a broken connection), the second one's replies tell it: nothing of its content was
sent, so it is retried on a fresh connection as any stale reused connection is.

On a session that sends content by BDAT (RFC 3030 CHUNKING) nothing is written ahead: with
PIPELINING each message is already one write (MAIL, RCPT..., BDAT and the chunk), and the
next delivery in line gets the session when it is released, as without pipelining.

Before a delivery writes its content it calls :meth:`hold`: when its caller records outcomes
(:data:`~mailgate.engines.base.outcome_recording` is set), at most ``size`` messages may be on
their way or delivered with their outcome unrecorded, one per connection. A worker killed
at any moment has then sent at most ``size`` messages it will send again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailgate.engines.base import outcome_recording
from mailgate.engines.smtp.session import SmtpSession
from mailgate.engines.smtp.transcript import Transcript

Opener = Callable[[Transcript], Awaitable[SmtpSession]]
#: For a session, the envelope commands of a waiting delivery, or None if it cannot be
#: pipelined on that session (it then waits for a session of its own, as usual).
Preparer = Callable[[SmtpSession], bytes | None]


@dataclass(eq=False, slots=True)
class _Waiter:
    #: Resolved with a session (its envelope written ahead, or not), or None for a free slot.
    future: asyncio.Future[tuple[SmtpSession | None, bool]]
    prepare: Preparer | None


class SessionPool:
    """Hands out sessions, at most ``size`` at a time; see the module docstring."""

    def __init__(self, opener: Opener, *, size: int) -> None:
        if size < 1:
            raise ValueError("a pool needs room for at least one session")
        self._opener = opener
        self._size = size
        #: Sessions held by deliveries or being opened (at most ``size``).
        self._busy = 0
        self._waiters: deque[_Waiter] = deque()
        #: A session whose current delivery wrote the envelope of a waiting one behind it.
        self._bound: dict[SmtpSession, _Waiter] = {}
        self._idle: list[SmtpSession] = []
        self._closing: set[asyncio.Task[bool]] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Messages handed to the server whose outcome is not yet recorded (see :meth:`hold`).
        self._unrecorded = asyncio.Semaphore(size)
        #: The recording futures of the messages holding a place, with their callers' hurry.
        self._holding: dict[asyncio.Future[None], Callable[[], None]] = {}
        self.opened = 0
        #: Envelopes written behind a previous message's content (for tests and metrics).
        self.pipelined = 0

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def acquire(
        self, transcript: Transcript, prepare: Preparer | None = None
    ) -> tuple[SmtpSession, bool]:
        """A session for one transaction and whether it was reused.

        When the session's ``envelope_written`` is set, the envelope ``prepare`` returned for
        it is already on the wire: the transaction must read its replies without writing it.
        Opening a new session may raise :class:`~mailgate.engines.smtp.diagnose.SmtpError`;
        the slot is then given back. Every successful acquire must be paired with
        :meth:`release`.
        """
        if self._closed:
            raise RuntimeError("the session pool is closed")
        if self._busy < self._size and not self._waiters:
            self._busy += 1
            return await self._take(transcript)
        if self._loop is None:
            # Kept: asking asyncio for the loop is a system call on Python 3.11.
            self._loop = asyncio.get_running_loop()
        waiter = _Waiter(self._loop.create_future(), prepare)
        self._waiters.append(waiter)
        try:
            session, written = await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        if session is None:
            return await self._take(transcript)
        session.envelope_written = written
        _note_reuse(session, transcript)
        return session, True

    def follow(self, session: SmtpSession) -> bytes:
        """The envelope of the first waiting delivery, bound to ``session`` (``b""`` if none
        can follow: nobody waits, the session's budget is spent, it sends by BDAT, or the
        next in line cannot be pipelined there)."""
        if session in self._bound or self._closed or session.chunking:
            return b""
        if session.uses + 2 > session.settings.max_messages_per_connection:
            return b""
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()
        if not self._waiters:
            return b""
        waiter = self._waiters[0]
        envelope = waiter.prepare(session) if waiter.prepare is not None else None
        if not envelope:
            return b""
        self._waiters.popleft()
        self._bound[session] = waiter
        self.pipelined += 1
        return envelope

    async def hold(self) -> None:
        """Wait until this delivery may hand its content to the server: until fewer than
        ``size`` messages are handed over with their outcome unrecorded. The place is given
        back when the delivery's ``recorded`` future is done; without an
        :class:`~mailgate.engines.base.OutcomeRecording` (probes, callers that record
        nothing), nothing waits. Before waiting, the callers holding places are hurried."""
        recording = outcome_recording.get()
        if recording is None:
            return
        recorded = recording.recorded
        if recorded.done() or recorded in self._holding:
            return
        if self._unrecorded.locked():
            for hurry in set(self._holding.values()):
                hurry()
        await self._unrecorded.acquire()
        self._holding[recorded] = recording.hurry
        recorded.add_done_callback(self._recorded)

    def _recorded(self, recorded: asyncio.Future[None]) -> None:
        del self._holding[recorded]
        self._unrecorded.release()

    def release(self, session: SmtpSession, *, reusable: bool) -> None:
        """Give ``session`` back: to the delivery whose envelope follows on it, else kept for
        reuse if ``reusable`` and healthy (or handed to the next in line), else closed."""
        session.last_used = time.monotonic()
        session.envelope_written = False
        bound = self._bound.pop(session, None)
        if bound is not None:
            if not bound.future.done():
                # Even a broken session goes to it: its replies say so, and it retries.
                bound.future.set_result((session, True))
                return
            reusable = False  # its delivery was cancelled: nobody reads its replies
        if reusable and not self._closed and session.wire.is_open:
            if session.uses >= session.settings.max_messages_per_connection:
                # Its budget is spent: renewed, also when deliveries wait for it (else a
                # busy pool would keep its first connections for ever and, past their
                # budget, stop writing envelopes ahead).
                self._retire(session)
                self._free_slot()
                return
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.future.set_result((session, False))
                return
            self._idle.append(session)
            self._busy -= 1
            return
        session.abort()
        self._free_slot()

    async def aclose(self) -> None:
        """Close idle sessions politely (QUIT) and refuse further acquires."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(session.quit() for session in idle))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    async def _take(self, transcript: Transcript) -> tuple[SmtpSession, bool]:
        """An idle session or a new one, for a slot already counted in ``_busy``."""
        try:
            now = time.monotonic()
            while self._idle:
                session = self._idle.pop()
                if session.usable(now=now):
                    _note_reuse(session, transcript)
                    return session, True
                self._retire(session)
            session = await self._opener(transcript)
            self.opened += 1
            return session, False
        except BaseException:
            self._free_slot()
            raise

    def _next_waiter(self) -> _Waiter | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                return waiter
        return None

    def _free_slot(self) -> None:
        """A slot became free: the next in line opens (or takes) a session with it."""
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.future.set_result((None, False))
        else:
            self._busy -= 1

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiting delivery was cancelled: give back whatever it had been handed."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            return
        if not waiter.future.done() or waiter.future.cancelled():
            return  # bound to a session: release() sees the cancelled future
        session, written = waiter.future.result()
        if session is None:
            self._free_slot()
        else:
            self.release(session, reusable=not written)

    def _retire(self, session: SmtpSession) -> None:
        """Close an expired idle session in the background (QUIT, then close)."""
        if not session.wire.is_open:
            session.abort()
            return
        task = asyncio.get_running_loop().create_task(session.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _note_reuse(session: SmtpSession, transcript: Transcript) -> None:
    version = session.wire.tls_version()
    transcript.tls_version = version
    transcript.note(f"reusing connection (message {session.uses + 1} on it, {version or 'no TLS'})")
