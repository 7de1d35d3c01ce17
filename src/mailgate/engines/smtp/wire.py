"""The SMTP client wire: bytes out, parsed replies in, on one asyncio transport.

Mailgate speaks SMTP on its own small protocol object rather than through a client
library's command loop because it needs replies queued in order for ESMTP PIPELINING
(RFC 2920: several commands written at once, their replies read back one by one), a
distinct timeout for the reply after the final dot (or after the last BDAT chunk, RFC
3030), and to know whether the message bytes left the process before a connection broke.

Errors are raised as :class:`TimeoutError`, :class:`ConnectionLost` and
:class:`ProtocolError`; turning them into delivery outcomes is the session's job.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast

#: RFC 5321 section 4.5.3.1.5 allows 512 octets per reply line; be lenient, not unbounded.
MAX_REPLY_LINE = 8192
MAX_REPLY_BYTES = 64 * 1024

# A line that is not CRLF, as one character: a CR not followed by LF, or an LF not preceded
# by CR (RFC 5321 section 2.3.8: bare CR and LF must never be sent).
_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_COMMAND_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
# A TLS record starts with a content type (20-23: change_cipher_spec, alert, handshake,
# application_data) and the major version 3 (RFC 8446 section 5.1).
_TLS_RECORD = re.compile(rb"^[\x14-\x17]\x03")


class ConnectionLost(ConnectionError):
    """The server closed the connection, or it broke, while a reply was awaited."""


class ProtocolError(Exception):
    """The server sent something that is not an SMTP reply (RFC 5321 section 4.2).

    ``looks_like_tls`` is true when the bytes start like a TLS record: the port speaks
    implicit TLS and the client expected plain SMTP.
    """

    def __init__(self, message: str, *, looks_like_tls: bool = False) -> None:
        super().__init__(message)
        self.looks_like_tls = looks_like_tls


@dataclass(frozen=True, slots=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply lines joined by spaces: what people read in logs."""
        return " ".join(line for line in self.lines if line).strip()

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


def encode_command(command: str, *, utf8: bool = False) -> bytes:
    """``command`` as wire bytes with CRLF; raises ``ValueError`` on control characters.

    Addresses are validated by the caller; this is the last line of defence against
    command injection (no CR or LF may end up inside a command).
    """
    if _COMMAND_FORBIDDEN.search(command):
        raise ValueError("an SMTP command must not contain control characters")
    return command.encode("utf-8" if utf8 else "ascii") + b"\r\n"


def crlf_lines(data: bytes) -> bytes:
    """``data`` as CRLF lines, ending with CRLF: the content as both DATA and BDAT carry it.

    Every bare CR or LF becomes CRLF (RFC 5321 section 2.3.8) and the content ends with
    CRLF, so that DATA can add its final dot and a BDAT chunk ends a line (RFC 3030
    section 2 counts exactly these octets).
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:  # cheap test for the rare case
        data = _BARE_LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def encode_message(data: bytes) -> bytes:
    """``data`` ready for the wire after a 354: CRLF lines, dot-stuffed, final dot added.

    The lines are those of :func:`crlf_lines`; each line starting with "." gets one more
    (RFC 5321 section 4.5.2) and ``.CRLF`` ends the data (section 4.1.1.4).
    """
    data = crlf_lines(data).replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"


def encode_bdat_last(size: int) -> bytes:
    """The command announcing the one and last chunk of ``size`` octets (RFC 3030 section 2:
    no dot-stuffing and no final dot; the count alone delimits the content)."""
    return b"BDAT %d LAST\r\n" % size


class SmtpWire(asyncio.Protocol):
    """An asyncio protocol that queues parsed replies and tracks write flushing."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._partial: list[str] = []
        self._partial_bytes = 0
        self._code = b""
        self._replies: deque[Reply | BaseException] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._flushed: asyncio.Future[None] | None = None
        self._paused = False
        self._lost: BaseException | None = None
        self._gone: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement the interface without
        # deriving from asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        # Pause as soon as anything is buffered, resume when all of it reached the kernel,
        # so that wait_flushed() means "every byte left this process".
        self._transport.set_write_buffer_limits(high=0, low=0)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except ProtocolError as exc:
            self._push(exc)
            self.abort()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending_looks_like_tls():
            self._push(ProtocolError("TLS data instead of SMTP", looks_like_tls=True))
            self._buffer.clear()
        self._lost = ConnectionLost(f"connection lost: {exc}" if exc else "connection closed")
        if exc is not None:
            self._lost.__cause__ = exc
        self._wake()
        self._resolve_flushed()
        if not self._gone.done():
            self._gone.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._resolve_flushed()

    # -- the client side ------------------------------------------------------------------

    @property
    def transport(self) -> asyncio.Transport:
        if self._transport is None:
            raise ConnectionLost("not connected")
        return self._transport

    @property
    def is_open(self) -> bool:
        return self._lost is None and self._transport is not None and not self.is_closing()

    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    @property
    def has_pending_replies(self) -> bool:
        """Whether the server said something nobody has read (e.g. an unsolicited 421)."""
        return bool(self._replies) or bool(self._buffer)

    def tls_version(self) -> str | None:
        """The negotiated TLS version (``"TLSv1.3"``), or ``None`` on a plain connection."""
        ssl_object = self.ssl_object()
        return ssl_object.version() if ssl_object is not None else None

    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS session of the connection (certificate, cipher), if there is one."""
        if self._transport is None:
            return None
        found = self._transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    def pending_looks_like_tls(self) -> bool:
        """Whether bytes received but not yet a complete line start like a TLS record."""
        return not self._partial and bool(_TLS_RECORD.match(bytes(self._buffer)))

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending; raises :class:`ConnectionLost` if the line is gone."""
        if self._lost is not None:
            raise self._lost
        self.transport.write(data)

    async def wait_flushed(self) -> None:
        """Wait until everything written so far has been handed to the kernel."""
        if self._lost is not None:
            raise self._lost
        if not self._paused:
            return
        self._flushed = self._loop.create_future()
        await self._flushed
        if self._lost is not None and self._paused:
            raise self._lost

    async def read_reply(self, *, timeout: float) -> Reply:
        """The next reply, in order; :class:`TimeoutError` if none arrives in ``timeout``."""
        if not self._replies:
            await self._wait_reply(timeout)
        item = self._replies.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    async def _wait_reply(self, timeout: float) -> None:
        # A plain future and one timer handle: this runs for every reply, and is much
        # cheaper than a timeout context manager around a task.
        while not self._replies:
            if self._lost is not None:
                raise self._lost
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    async def start_tls(
        self, context: ssl.SSLContext, *, server_hostname: str, timeout: float
    ) -> None:
        """Upgrade the connection after a 220 to STARTTLS (RFC 3207 section 4)."""
        if self.has_pending_replies:
            # RFC 3207 section 4.2 / the STARTTLS command-injection class of attacks:
            # anything received after the 220 in plaintext must not survive into TLS.
            raise ProtocolError(
                "the server sent data after its reply to STARTTLS (RFC 3207 section 5)"
            )
        transport = await self._loop.start_tls(
            self.transport,
            self,
            context,
            server_side=False,
            server_hostname=server_hostname,
            ssl_handshake_timeout=timeout,
        )
        if transport is None:  # pragma: no cover - only when the loop is closing
            raise ConnectionLost("connection closed during the TLS handshake")
        self._transport = transport
        self._transport.set_write_buffer_limits(high=0, low=0)

    def close(self) -> None:
        """Close after flushing what was written."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping anything unsent."""
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self, *, timeout: float) -> None:
        """Wait until the connection is gone (a TLS close may take a round trip); then, or
        after ``timeout`` seconds, it is dropped for sure. Never raises."""
        if self._transport is not None and not self._gone.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._gone), timeout)
            except TimeoutError:
                self.abort()

    # -- internals ------------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        last = buffer.rfind(b"\n")
        if last < 0:
            if len(buffer) > MAX_REPLY_LINE:
                raise ProtocolError("reply line too long")
            return
        complete = bytes(buffer[: last + 1])
        del buffer[: last + 1]
        for raw in complete.split(b"\n")[:-1]:
            if len(raw) >= MAX_REPLY_LINE:
                raise ProtocolError("reply line too long")
            line = raw[:-1] if raw.endswith(b"\r") else raw
            sep = line[3:4]
            if not (line[:3].isdigit() and (sep == b" " or sep == b"-" or len(line) == 3)):
                shown = line[:60].decode("ascii", "replace")
                tls = not self._partial and bool(_TLS_RECORD.match(raw))
                raise ProtocolError(f"not an SMTP reply: {shown!r}", looks_like_tls=tls)
            if self._partial and line[:3] != self._code:
                # RFC 5321 section 4.2.1: every line of a reply carries the same code.
                raise ProtocolError("the lines of one reply carry different codes")
            self._code = line[:3]
            self._partial.append(line[4:].decode("utf-8", "replace"))
            self._partial_bytes += len(raw)
            if self._partial_bytes > MAX_REPLY_BYTES:
                raise ProtocolError("reply too long")
            if sep != b"-":
                self._push(Reply(int(line[:3]), tuple(self._partial)))
                self._partial = []
                self._partial_bytes = 0

    def _push(self, item: Reply | BaseException) -> None:
        self._replies.append(item)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _resolve_flushed(self) -> None:
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
