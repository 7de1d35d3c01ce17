"""Loopback SMTP servers for engine tests, and a dialer that sends every host to loopback.

* :class:`LoopbackDialer` — the engines' ``Dialer`` for tests: whatever host name a server
  config names, it connects to 127.0.0.1 on the given port and records the attempt. A
  config can therefore use ``HOST`` and TLS verifies that name against the test CA.
* :class:`AiosmtpdServer` — a real aiosmtpd server in its own thread, in ``plain``,
  ``starttls`` or ``tls`` (implicit) mode, optionally with AUTH for one user/password. It
  records every message (envelope and content) and counts connections.
* :class:`RawSmtpServer` — an asyncio server that plays a scripted dialogue, for faults
  aiosmtpd cannot produce: odd greetings, chosen replies per command, disconnects, stalls.
  It records the raw bytes of every connection. It also speaks BDAT (RFC 3030 CHUNKING,
  which aiosmtpd does not implement) when a client sends it: ``BDAT <n> [LAST]`` is
  followed by exactly n octets, read before the scripted reply is sent.

All servers listen on 127.0.0.1 on a free port and are async context managers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "mail.mailgate.test"
USER = "mailer@mailgate.test"
PASSWORD = "Canary-Pa55word-7f3e"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackDialer:
    """Connects every (host, port) to 127.0.0.1:port; ``attempts`` lists what was asked."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def connect(self, host: str, port: int, *, timeout: float) -> socket.socket:
        self.attempts.append((host, port))
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return sock


# -- aiosmtpd ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message as an SMTP server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()


class _Recorder:
    """aiosmtpd handler: accepts everything and records it."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []
        self.peers: set[object] = set()

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.messages.append(
            ReceivedMessage(
                envelope.mail_from,
                tuple(envelope.rcpt_tos),
                bytes(envelope.original_content or envelope.content),
                tuple(envelope.mail_options),
            )
        )
        return "250 2.0.0 Ok: queued as A1B2C3"


class _CountingSMTP(SMTP):  # type: ignore[misc]
    def __init__(self, recorder: _Recorder, **kwargs: Any) -> None:
        super().__init__(recorder, **kwargs)
        self._recorder = recorder

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again on the same connection after STARTTLS: count client ports instead.
        self._recorder.peers.add(transport.get_extra_info("peername"))
        super().connection_made(transport)


class _Controller(Controller):  # type: ignore[misc]
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class AiosmtpdServer:
    """aiosmtpd on 127.0.0.1 in ``mode`` plain, starttls or tls; see the module docstring.

    With ``user`` set, AUTH PLAIN and LOGIN accept exactly ``user``/``password``.
    ``smtputf8`` controls whether SMTPUTF8 is offered.
    """

    mode: str = "plain"
    cert: Any = None  # tests.support.tls.CertFiles for starttls and tls
    user: str | None = None
    password: str = PASSWORD
    smtputf8: bool = True
    data_size_limit: int = 10 * 1024 * 1024
    port: int = 0
    _recorder: _Recorder = field(default_factory=_Recorder)
    _controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self._recorder.messages

    @property
    def connections(self) -> int:
        """Connections made by clients (the controller's own start-up probe excluded)."""
        return len(self._recorder.peers)

    async def __aenter__(self) -> AiosmtpdServer:
        context = self.cert.server_context() if self.cert is not None else None
        kwargs: dict[str, Any] = {
            "server_hostname": HOST,
            "enable_SMTPUTF8": self.smtputf8,
            "data_size_limit": self.data_size_limit,
            # aiosmtpd treats implicit TLS as "STARTTLS not done" and would hide AUTH.
            "auth_require_tls": self.mode == "starttls",
        }
        if self.user is not None:
            kwargs["authenticator"] = self._authenticate
        if self.mode == "starttls":
            kwargs["tls_context"] = context
        self.port = free_port()
        self._controller = _Controller(
            self._recorder,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=context if self.mode == "tls" else None,
            **kwargs,
        )
        with warnings.catch_warnings():
            # AUTH without required TLS is what the plain-mode tests are about.
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            await asyncio.to_thread(self._controller.start)
        self._recorder.peers.clear()  # forget the controller's start-up probe
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._controller is not None
        await asyncio.to_thread(self._controller.stop)
        # After a failed server-side TLS handshake, asyncio (3.11) in the controller's
        # thread can leave the accepted socket unclosed until the stopped loop is garbage.
        # Collect it here, with its ResourceWarning silenced: it is the test server's, not
        # the code under test's.
        self._controller = None
        if self.cert is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()

    def _authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode() == self.user and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)


# -- the raw, scripted server -----------------------------------------------------------


class Action:
    """A scripted non-reply: :data:`CLOSE` the connection, or :data:`STALL` (say nothing)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


CLOSE = Action("CLOSE")
STALL = Action("STALL")

Step = bytes | Action
#: Replies by verb: one step, or a sequence used in order (the last one repeats). Verbs are
#: the command words plus ``GREETING`` and ``DOT`` (the reply to the final dot); ``BDAT``
#: answers each chunk once it has been read; ``CONTENT`` may be :data:`CLOSE` to hang up in
#: the middle of the message content (after DATA's 354, or after a BDAT command).
Replies = Mapping[str, Step | Sequence[Step]]

DEFAULT_EHLO = (
    b"250-raw.mailgate.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    b"250-SIZE 10485760\r\n250 ENHANCEDSTATUSCODES\r\n"
)
#: An EHLO reply offering CHUNKING (RFC 3030) with PIPELINING, and one without PIPELINING.
CHUNKING_EHLO = (
    b"250-raw.mailgate.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n"
    b"250-SIZE 10485760\r\n250 ENHANCEDSTATUSCODES\r\n"
)
CHUNKING_ONLY_EHLO = CHUNKING_EHLO.replace(b"250-PIPELINING\r\n", b"")
DEFAULT_REPLIES: dict[str, Step] = {
    "GREETING": b"220 raw.mailgate.test ESMTP\r\n",
    "EHLO": DEFAULT_EHLO,
    "HELO": b"250 raw.mailgate.test\r\n",
    "MAIL": b"250 2.1.0 Ok\r\n",
    "RCPT": b"250 2.1.5 Ok\r\n",
    "DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    "DOT": b"250 2.0.0 Ok: queued as RAW123\r\n",
    "BDAT": b"250 2.0.0 Ok: queued as RAW123\r\n",
    "RSET": b"250 2.0.0 Ok\r\n",
    "NOOP": b"250 2.0.0 Ok\r\n",
    "QUIT": b"221 2.0.0 Bye\r\n",
}


@dataclass
class RawConnection:
    """One client connection to a :class:`RawSmtpServer`: what came in, what was read."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytearray = field(default_factory=bytearray)
    commands: list[bytes] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)  # raw DATA content incl. final dot
    chunks: list[bytes] = field(default_factory=list)  # the octets of each BDAT chunk
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_line(self) -> bytes:
        line = await self.reader.readline()
        self.received += line
        return line

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def serve(self, replies: Replies | None = None) -> None:
        """Run a standard SMTP dialogue, answering each command from ``replies``."""
        script = {**DEFAULT_REPLIES, **(replies or {})}
        used: dict[str, int] = {}

        def step(verb: str) -> Step:
            value = script.get(verb, b"502 5.5.2 Command not recognised\r\n")
            if isinstance(value, bytes | Action):
                return value
            count = used.get(verb, 0)
            used[verb] = count + 1
            return value[min(count, len(value) - 1)]

        if not await self._do(step("GREETING")):
            return
        while True:
            line = await self.read_line()
            if not line:
                return
            self.commands.append(line)
            verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
            if verb == "AUTH" or not verb:
                verb = verb or "EMPTY"
            if verb == "BDAT":
                if not await self._chunk(line, script, step):
                    return
                continue
            reply = step(verb)
            if not await self._do(reply):
                return
            if verb == "DATA" and isinstance(reply, bytes) and reply.startswith(b"354"):
                if script.get("CONTENT") is CLOSE:
                    await self.reader.read(1024)
                    self.writer.transport.abort()
                    return
                content = bytearray()
                while not content.endswith(b"\r\n.\r\n") and content != b".\r\n":
                    line = await self.reader.readline()
                    if not line:
                        return
                    content += line
                self.received += content
                self.contents.append(bytes(content))
                if not await self._do(step("DOT")):
                    return
            if verb == "QUIT":
                return

    async def _chunk(self, line: bytes, script: Replies, step: Callable[[str], Step]) -> bool:
        """Read the chunk announced by ``BDAT <n> [LAST]`` (RFC 3030 section 2), then reply.

        The chunk is read whatever the state of the transaction, as a server must (it
        discards the chunk of a refused transaction); only the scripted reply differs.
        """
        words = line.split()
        if len(words) not in (2, 3) or not words[1].isdigit():
            return await self._do(b"501 5.5.4 Syntax: BDAT <size> [LAST]\r\n")
        if script.get("CONTENT") is CLOSE:
            await self.reader.read(1024)
            self.writer.transport.abort()
            return False
        chunk = await self.reader.readexactly(int(words[1]))
        self.received += chunk
        self.chunks.append(chunk)
        return await self._do(step("BDAT"))

    async def _do(self, step: Step) -> bool:
        if step is CLOSE:
            self.writer.transport.abort()
            return False
        if step is STALL:
            await self.stopping.wait()  # say nothing until the server stops
            return False
        assert isinstance(step, bytes)
        await self.send(step)
        return True


Handler = Callable[[RawConnection], Awaitable[None]]


class RawSmtpServer:
    """A scripted SMTP server; ``handler(conn)`` plays each connection.

    ``RawSmtpServer.scripted(replies)`` answers every connection with the same script;
    ``RawSmtpServer(handler)`` lets the handler choose per connection (``conn.index``).
    """

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.connections: list[RawConnection] = []
        self.port = 0

    @classmethod
    def scripted(cls, replies: Replies | None = None) -> RawSmtpServer:
        async def handler(conn: RawConnection) -> None:
            await conn.serve(replies)

        return cls(handler)

    @property
    def received(self) -> bytes:
        """Every byte received, all connections in order."""
        return b"".join(bytes(c.received) for c in self.connections)

    @property
    def contents(self) -> list[bytes]:
        return [content for c in self.connections for content in c.contents]

    @property
    def chunks(self) -> list[bytes]:
        """Every BDAT chunk received, all connections in order."""
        return [chunk for c in self.connections for chunk in c.chunks]

    async def __aenter__(self) -> RawSmtpServer:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._stopping.set()
        for conn in self.connections:
            conn.writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RawConnection(len(self.connections), reader, writer, stopping=self._stopping)
        self.connections.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(conn)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
