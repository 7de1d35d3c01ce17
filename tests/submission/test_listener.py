"""The listener itself: settings, the AUTH-over-TLS rule, certificates, a clean stop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiosmtplib
import pytest

from mailgate.errors import ConfigurationError
from mailgate.runtime import Context
from mailgate.settings import Settings
from mailgate.submission import SubmissionConfig, SubmissionServer, start_submission
from mailgate.submission.config import is_loopback
from tests.delivery.conftest import Tenant
from tests.support.tls import CertFiles

from .conftest import LOCAL, SENDER, SLUG, Serve, client, message, queued_id, token_of

CERT = Path("server.crt")
KEY = Path("server.key")


@pytest.mark.parametrize(
    ("host", "tls", "allow", "needs_tls"),
    [
        ("127.0.0.1", False, False, False),  # loopback without TLS: AUTH in clear
        ("::1", False, False, False),
        ("localhost", False, False, False),
        ("127.0.0.1", True, False, True),  # TLS configured: always after STARTTLS
        ("127.0.0.1", True, True, False),  # unless explicitly allowed
        # Non-loopback values (RFC 5737 documentation addresses): nothing listens on them.
        ("192.0.2.10", False, False, True),
        ("192.0.2.10", True, False, True),
        ("192.0.2.10", False, True, False),  # behind a TLS-terminating proxy
        ("mail.example.com", False, False, True),
    ],
)
def test_when_auth_waits_for_tls(host: str, tls: bool, allow: bool, needs_tls: bool) -> None:
    config = SubmissionConfig(
        host=host,
        tls_cert=CERT if tls else None,
        tls_key=KEY if tls else None,
        allow_insecure_auth=allow,
    )
    assert config.auth_needs_tls is needs_tls
    # Only a listener on which nobody could ever authenticate is worth a warning.
    assert (config.warning is not None) is (needs_tls and not tls)


def test_loopback_names() -> None:
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and is_loopback("LOCALHOST")
    assert not is_loopback("10.0.0.1") and not is_loopback("localhost.example.com")


def test_settings_describe_the_listener(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        smtp_port=2626,
        smtp_tls_cert=tmp_path / "c.pem",
        smtp_tls_key=tmp_path / "k.pem",
        smtp_allow_insecure_auth=True,
    )
    config = SubmissionConfig.from_settings(settings)
    assert (config.host, config.port) == ("127.0.0.1", 2626)
    assert config.tls_cert == tmp_path / "c.pem" and config.tls_key == tmp_path / "k.pem"
    assert config.allow_insecure_auth is True
    defaults = Settings(data_dir=tmp_path)
    assert defaults.smtp_port == 2525 and defaults.smtp_tls_cert is None
    assert defaults.smtp_allow_insecure_auth is False


async def test_port_zero_in_settings_disables_the_listener(
    ctx: Context, settings: Settings
) -> None:
    assert await start_submission(ctx, settings.model_copy(update={"smtp_port": 0})) is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


async def test_start_submission_listens_where_settings_say(
    tenant: Tenant, settings: Settings
) -> None:
    port = _free_port()
    server = await start_submission(tenant.ctx, settings.model_copy(update={"smtp_port": port}))
    assert server is not None
    async with server:
        assert server.port == port
        async with client(port) as smtp:
            await smtp.login(SLUG, token_of(tenant))
            _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
        assert queued_id(reply)
        banner = await _banner(port)
        assert banner.startswith("220 ") and "Mailgate ESMTP" in banner
        assert "Python" not in banner  # no library version for the asking
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await client(port).connect()


async def _banner(port: int) -> str:
    reader, writer = await asyncio.open_connection(LOCAL, port)
    try:
        return (await reader.readline()).decode()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_busy_port_is_a_configuration_error(ctx: Context, serve: Serve) -> None:
    async with serve() as first:
        with pytest.raises(ConfigurationError, match=r"cannot listen on 127\.0\.0\.1"):
            await start_submission(ctx, Settings(host=LOCAL, smtp_port=first.port))


@pytest.mark.parametrize("which", ["cert only", "unreadable", "key mismatch"])
async def test_unusable_certificates_are_configuration_errors(
    ctx: Context, serve: Serve, cert: CertFiles, tmp_path: Path, which: str
) -> None:
    other = CertFiles(tmp_path / "other.crt", tmp_path / "other.key")
    other.key_file.write_bytes(cert.key_file.read_bytes().replace(b"A", b"B", 5))
    options = {
        "cert only": {"tls_cert": cert.cert_file},
        "unreadable": {"tls_cert": tmp_path / "missing.crt", "tls_key": cert.key_file},
        "key mismatch": {"tls_cert": cert.cert_file, "tls_key": other.key_file},
    }[which]
    with pytest.raises(ConfigurationError, match="SMTP submission"):
        async with serve(**options):
            pass


async def test_stop_says_421_to_open_connections_and_closes_them(
    tenant: Tenant, serve: Serve
) -> None:
    async with serve() as server:
        reader, writer = await asyncio.open_connection(LOCAL, server.port)
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(b"EHLO app.acme.test\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        await server.stop()
        assert (await reader.readline()).startswith(b"421 4.3.2 ")
        assert await reader.read() == b""  # closed
        writer.close()
        await writer.wait_closed()


async def test_stop_lets_a_message_being_committed_finish(
    tenant: Tenant, plain: SubmissionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailgate.services import submit_raw

    committing = asyncio.Event()
    release = asyncio.Event()
    real_commit = submit_raw.commit

    async def slow_commit(*args: object, **kwargs: object) -> None:
        committing.set()
        await release.wait()
        await real_commit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(submit_raw, "commit", slow_commit)

    async def submit() -> str:
        async with client(plain.port) as smtp:
            await smtp.login(SLUG, token_of(tenant))
            _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
            return reply

    sending = asyncio.create_task(submit())
    await asyncio.wait_for(committing.wait(), 10)
    stopping = asyncio.create_task(plain.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waiting for the commit
    release.set()
    await asyncio.wait_for(stopping, 10)
    reply = await asyncio.wait_for(sending, 10)
    stored = await tenant.message(queued_id(reply))
    assert stored["status"] == "queued"


async def test_stop_hangs_up_on_a_tls_handshake_in_progress(
    tenant: Tenant, serve: Serve, cert: CertFiles
) -> None:
    async with serve(tls_cert=cert.cert_file, tls_key=cert.key_file, shutdown_grace=30) as server:
        reader, writer = await asyncio.open_connection(LOCAL, server.port)
        await reader.readline()
        writer.write(b"EHLO app.acme.test\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        writer.write(b"STARTTLS\r\n")
        assert (await reader.readline()).startswith(b"220 ")
        # The client never sends its TLS hello: the server waits in the handshake.
        await asyncio.wait_for(server.stop(), 5)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
