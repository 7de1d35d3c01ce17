"""The probe's side of the SMTP dialogue: reading replies and sending the few commands it may.

The probe drives the dialogue itself over asyncio streams so that every step can be timed
and every failure classified exactly. It can send only EHLO, HELO, STARTTLS, AUTH (with its
SASL continuation lines) and QUIT: :meth:`ProbeChannel.command` refuses any other verb, so a
test connection can never start a mail transaction (MAIL, RCPT, DATA, BDAT).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass

from mailgate.engines.smtp.wire import Reply

ALLOWED_VERBS = frozenset({"EHLO", "HELO", "STARTTLS", "AUTH", "QUIT"})

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; be lenient, but bounded.
_MAX_LINE = 4096
_MAX_LINES = 200
_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -]|$)(.*)$", re.DOTALL)
# A TLS record starts with a content type (20-23: change_cipher_spec, alert, handshake,
# application_data) and the major version 3 (RFC 8446 section 5.1).
_TLS_RECORD = re.compile(rb"^[\x14-\x17]\x03")


class ProtocolError(Exception):
    """The peer sent something that is not an SMTP reply; ``looks_like_tls`` if a TLS record."""

    def __init__(self, message: str, *, looks_like_tls: bool = False) -> None:
        super().__init__(message)
        self.looks_like_tls = looks_like_tls


class ConnectionLost(Exception):
    """The peer closed the connection before its reply was complete."""


@dataclass(frozen=True, slots=True)
class Extensions:
    """The EHLO keywords (upper case) and the AUTH mechanisms they announce (RFC 4954 3)."""

    keywords: tuple[str, ...]
    auth_mechanisms: tuple[str, ...]

    @classmethod
    def parse(cls, reply: Reply) -> Extensions:
        """Parse a 250 EHLO reply; its first line is the greeting, not an extension."""
        keywords: dict[str, None] = {}
        mechanisms: dict[str, None] = {}
        for line in reply.lines[1:]:
            words = line.split()
            if not words:
                continue
            # Some servers still announce the pre-standard form "AUTH=PLAIN LOGIN".
            keyword, _, first = words[0].upper().partition("=")
            keywords.setdefault(keyword, None)
            if keyword == "AUTH":
                for mechanism in ([first] if first else []) + words[1:]:
                    mechanisms.setdefault(mechanism.upper(), None)
        return cls(tuple(keywords), tuple(mechanisms))

    def __contains__(self, keyword: object) -> bool:
        return keyword in self.keywords


class ProbeChannel:
    """One SMTP client connection of the probe, plain or TLS, over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        found = self.writer.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    async def read_reply(self, *, timeout: float) -> Reply:
        """Read one complete (possibly multi-line) reply within ``timeout`` seconds.

        Raises ``TimeoutError``, :class:`ConnectionLost` or :class:`ProtocolError`.
        """
        async with asyncio.timeout(timeout):
            return await self._read_reply()

    async def _read_reply(self) -> Reply:
        lines: list[str] = []
        code: bytes | None = None
        while len(lines) < _MAX_LINES:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if _TLS_RECORD.match(exc.partial):
                    raise ProtocolError("TLS data instead of SMTP", looks_like_tls=True) from exc
                raise ConnectionLost("the server closed the connection") from exc
            except asyncio.LimitOverrunError as exc:
                raise ProtocolError("reply line too long") from exc
            if len(raw) > _MAX_LINE:
                raise ProtocolError("reply line too long")
            match = _REPLY_LINE.match(raw.rstrip(b"\r\n"))
            if match is None:
                looks_like_tls = bool(_TLS_RECORD.match(raw)) and not lines
                raise ProtocolError("malformed SMTP reply", looks_like_tls=looks_like_tls)
            if code is not None and match.group(1) != code:
                raise ProtocolError("reply lines carry different codes")  # RFC 5321 4.2.1
            code = match.group(1)
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) != b"-":
                return Reply(int(code), tuple(lines))
        raise ProtocolError("reply has too many lines")

    async def command(self, verb: str, argument: str = "", *, timeout: float) -> Reply:
        """Send ``VERB argument`` and read the reply. Only :data:`ALLOWED_VERBS` may be sent."""
        if verb not in ALLOWED_VERBS:
            raise ValueError(f"the probe never sends {verb}")
        return await self.send_line(f"{verb} {argument}".rstrip(), timeout=timeout)

    async def send_line(self, line: str, *, timeout: float) -> Reply:
        """Send one line (a command or a SASL response) and read the reply."""
        if "\r" in line or "\n" in line:
            raise ValueError("a command line cannot contain CR or LF")  # RFC 5321 2.3.8
        self.writer.write(line.encode("ascii") + b"\r\n")
        async with asyncio.timeout(timeout):
            await self.writer.drain()
            return await self._read_reply()

    def pending_looks_like_tls(self) -> bool:
        """Whether unread bytes (no complete line yet) start like a TLS record."""
        return bool(_TLS_RECORD.match(bytes(getattr(self.reader, "_buffer", b""))))

    def has_buffered_input(self) -> bool:
        """Whether the server sent bytes it had no reason to send yet.

        After the 220 reply to STARTTLS anything still buffered was sent in plain text and
        would be taken for data inside TLS: a command injection (RFC 3207 section 5 and
        CVE-2011-0411), so it is treated as a protocol error.
        """
        buffered = getattr(self.reader, "_buffer", b"")
        return bool(buffered)

    async def start_tls(self, context: ssl.SSLContext, *, host: str, timeout: float) -> None:
        """Upgrade this connection to TLS (RFC 3207), verifying against ``host``."""
        async with asyncio.timeout(timeout):
            await self.writer.start_tls(
                context, server_hostname=host, ssl_handshake_timeout=timeout + 1
            )

    async def close(self) -> None:
        """Close the connection; never raises."""
        self.writer.close()
        try:
            async with asyncio.timeout(1):
                await self.writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass
