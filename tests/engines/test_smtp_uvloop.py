"""The SMTP engine on uvloop, the event loop `serve` and `worker` use when it is installed."""

from __future__ import annotations

import asyncio

import pytest
from tests.engines.conftest import ConfigFactory
from tests.support.smtp_servers import PASSWORD, USER, AiosmtpdServer, LoopbackDialer, RawSmtpServer
from tests.support.tls import CertFiles

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import AuthKind, Security
from mailgate.engines.config import Secret
from mailgate.engines.smtp.engine import SmtpEngine

uvloop = pytest.importorskip("uvloop")

MESSAGE = b"Subject: uvloop\r\n\r\nbody\r\n"


def envelope(n: int) -> Envelope:
    return Envelope("a@mailgate.test", (f"r{n}@x.test",))


def test_plain_pipelined_delivery_on_uvloop(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async def go() -> tuple[list[OutcomeKind], int, int]:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with RawSmtpServer.scripted() as server:
            engine = SmtpEngine(make_config(server.port, max_connections=2), dialer=dialer)
            results = await asyncio.gather(
                *(engine.deliver(envelope(n), MESSAGE) for n in range(10))
            )
            await engine.aclose()
        return [r.kind for r in results], len(server.contents), engine.envelopes_pipelined

    kinds, contents, pipelined = uvloop.run(go())
    assert kinds == [OutcomeKind.SENT] * 10
    assert contents == 10
    assert pipelined > 0


def test_starttls_and_auth_on_uvloop(
    make_config: ConfigFactory, dialer: LoopbackDialer, good_cert: CertFiles
) -> None:
    async def go() -> tuple[OutcomeKind, str | None]:
        async with AiosmtpdServer(mode="starttls", cert=good_cert, user=USER) as server:
            config = make_config(
                server.port,
                security=Security.STARTTLS,
                auth=AuthKind.PASSWORD,
                username=USER,
                password=Secret(PASSWORD),
            )
            engine = SmtpEngine(config, dialer=dialer)
            result = await engine.deliver(envelope(0), MESSAGE)
            await engine.aclose()
        return result.kind, result.tls_version

    kind, tls_version = uvloop.run(go())
    assert kind is OutcomeKind.SENT
    assert tls_version is not None and tls_version.startswith("TLS")
