"""Loopback SMTP servers and a throwaway PKI for the connection-probe tests.

* :class:`TestPKI` — a CA and server certificates (valid, expired, wrong name) made with
  ``cryptography``, written to files so that server contexts can load them.
* :class:`SmtpServer` — aiosmtpd on 127.0.0.1 (plain, STARTTLS or implicit TLS, optional
  AUTH for one user), recording every command it received.
* :class:`RawServer` — an asyncio server answering from a script, recording raw bytes, for
  byte-level cases aiosmtpd cannot produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "mail.mailgate.test"
USER = "probe-user"
PASSWORD = "probe-secret-Pa55"
TRANSACTION_VERBS = ("MAIL", "RCPT", "DATA", "BDAT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerCert:
    cert_file: Path
    key_file: Path

    def context(self, *, maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        if maximum_version is not None:
            context.maximum_version = maximum_version
        return context


class TestPKI:
    """A CA and the server certificates the probe tests need."""

    __test__ = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mailgate Test CA")])
        now = dt.datetime.now(dt.UTC)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(self._ca_name)
            .issuer_name(self._ca_name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        self.valid = self.issue("valid", HOST)
        self.expired = self.issue("expired", HOST, days=(-30, -1))
        self.wrong_name = self.issue("wrong-name", "other.mailgate.test")

    def issue(self, label: str, name: str, *, days: tuple[int, int] = (-1, 30)) -> ServerCert:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days[0]))
            .not_valid_after(now + dt.timedelta(days=days[1]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        cert_file = self.directory / f"{label}.crt"
        key_file = self.directory / f"{label}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return ServerCert(cert_file, key_file)


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
