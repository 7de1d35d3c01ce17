"""Loopback SMTP servers and a throwaway PKI for the connection-probe tests.

* :class:`TestPKI` — the shared test CA and server certificates (valid, expired, wrong
  name), written to files so that server contexts can load them.
* :class:`SmtpServer` — aiosmtpd on 127.0.0.1 (plain, STARTTLS or implicit TLS, optional
  AUTH for one user), recording every command it received.
* :class:`RawServer` — an asyncio server answering from a script, recording raw bytes, for
  byte-level cases aiosmtpd cannot produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from tests.support.tls import CertFiles, TestCA

HOST = "mail.mailgate.test"
USER = "probe-user"
PASSWORD = "probe-secret-Pa55"
TRANSACTION_VERBS = ("MAIL", "RCPT", "DATA", "BDAT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerCert(CertFiles):
    """A server certificate; ``context()`` is the server-side TLS context presenting it."""

    __slots__ = ()

    def context(self, *, maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        return self.server_context(maximum_version=maximum_version)


def loopback_cert(ca: TestCA) -> ServerCert:
    """A server certificate for the address 127.0.0.1 (an IP SAN), issued by ``ca``."""
    files = ca.issue("127.0.0.1", label="loopback")
    return ServerCert(files.cert_file, files.key_file)


class TestPKI:
    """The CA of :mod:`tests.support.tls` and the server certificates the probe tests need."""

    __test__ = False

    def __init__(self, directory: Path) -> None:
        self._ca = TestCA(directory)
        self.ca_pem = self._ca.ca_pem
        self.valid = self.issue("valid", HOST)
        self.expired = self.issue("expired", HOST, expired=True)
        self.wrong_name = self.issue("wrong-name", "other.mailgate.test")

    def issue(self, label: str, name: str, *, expired: bool = False) -> ServerCert:
        files = self._ca.issue(name, expired=expired, label=label)
        return ServerCert(files.cert_file, files.key_file)


class _Handler:
    """aiosmtpd handler that records any transaction hook (there must be none)."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands

    async def handle_MAIL(self, *args: Any) -> str:
        self.commands.append("handle_MAIL")
        return "250 OK"

    async def handle_RCPT(self, *args: Any) -> str:
        self.commands.append("handle_RCPT")
        return "250 OK"

    async def handle_DATA(self, *args: Any) -> str:
        self.commands.append("handle_DATA")
        return "250 OK"


class _RecordingSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd's SMTP that records the verb of every command it dispatches."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._recorded(verb, method, handler.commands)

    @staticmethod
    def _recorded(
        verb: str, method: Callable[[str], Awaitable[None]], commands: list[str]
    ) -> Callable[[str], Awaitable[None]]:
        async def call(arg: str) -> None:
            commands.append(verb)
            await method(arg)

        return call


class _Controller(Controller):  # type: ignore[misc]
    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1; use as a context manager. ``mode``: plain, starttls or tls."""

    mode: str = "plain"
    cert: ServerCert | None = None
    auth: bool = False
    auth_require_tls: bool = True
    maximum_version: ssl.TLSVersion | None = None
    commands: list[str] = field(default_factory=list)
    port: int = 0
    _controller: Controller | None = None

    def __enter__(self) -> SmtpServer:
        context = self.cert.context(maximum_version=self.maximum_version) if self.cert else None
        # aiosmtpd sees implicit TLS as "no STARTTLS done" and would then hide AUTH.
        require_tls = self.auth_require_tls and self.mode != "tls"
        kwargs: dict[str, Any] = {"server_hostname": HOST, "auth_require_tls": require_tls}
        if self.auth:
            kwargs["authenticator"] = _authenticate
        if self.mode == "starttls":
            kwargs["tls_context"] = context
        self.port = free_port()
        self._controller = _Controller(
            _Handler(self.commands),
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=context if self.mode == "tls" else None,
            **kwargs,
        )
        self._controller.start()
        self.commands.clear()  # the controller's own start-up probe is not a test's
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._controller is not None
        self._controller.stop()

    def transaction_commands(self) -> list[str]:
        return [c for c in self.commands if c.removeprefix("handle_") in TRANSACTION_VERBS]


def _authenticate(
    server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


Script = dict[str, bytes]


@dataclass
class RawServer:
    """A scripted TCP server: sends ``greeting`` on connect, then answers each line by verb.

    ``greeting=None`` stays silent (never greets, never answers); ``close_after_greeting``
    hangs up right after the greeting. Bytes received on every connection are recorded in
    ``received``.
    """

    greeting: bytes | None = b"220 raw.mailgate.test ESMTP\r\n"
    replies: Script = field(default_factory=dict)
    default: bytes = b"500 5.5.1 unrecognised\r\n"
    close_after_greeting: bool = False
    received: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.greeting is not None:
                writer.write(self.greeting)
                await writer.drain()
                if self.close_after_greeting:
                    return
            while True:
                line = await reader.readline()
                if not line:
                    break
                self.received.append(line)
                if self.greeting is None:
                    continue
                verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
                writer.write(self.replies.get(verb, self.default))
                await writer.drain()
                if verb == "QUIT":
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def all_bytes(self) -> bytes:
        return b"".join(self.received)

    def saw_transaction(self) -> bool:
        lines = self.all_bytes().upper().split(b"\n")
        return any(line.strip().startswith(v.encode()) for line in lines for v in TRANSACTION_VERBS)
