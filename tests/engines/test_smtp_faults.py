"""The SMTP engine against a scripted raw server: replies, faults, timeouts, the pool."""

from __future__ import annotations

import asyncio

import pytest
from tests.engines.conftest import ConfigFactory
from tests.support.smtp_servers import (
    CLOSE,
    DEFAULT_EHLO,
    PASSWORD,
    STALL,
    USER,
    AiosmtpdServer,
    LoopbackDialer,
    RawConnection,
    RawSmtpServer,
    Replies,
)

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import AuthKind, Security
from mailgate.engines.config import Secret
from mailgate.engines.smtp.engine import SmtpEngine

K = OutcomeKind
MESSAGE = b"Subject: faults\r\n\r\nbody\r\n"
ONE = Envelope("a@mailgate.test", ("b@mailgate.test",))
THREE = Envelope("a@mailgate.test", ("ok@x.test", "later@x.test", "never@x.test"))
NO_PIPELINING = b"250-raw.mailgate.test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"


async def deliver(
    make_config: ConfigFactory,
    dialer: LoopbackDialer,
    replies: Replies,
    envelope: Envelope = ONE,
    **overrides: object,
) -> tuple[RawSmtpServer, list[object]]:
    async with RawSmtpServer.scripted(replies) as server:
        engine = SmtpEngine(make_config(server.port, **overrides), dialer=dialer)
        result = await engine.deliver(envelope, MESSAGE)
        await engine.aclose()
    return server, [result]


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("replies", "kind", "code", "connection_error"),
    [
        ({"GREETING": b"421 4.3.2 too busy\r\n"}, K.DEFERRED, 421, True),
        ({"GREETING": b"554 5.7.1 no service for you\r\n"}, K.FAILED, 554, True),
        ({"MAIL": b"451 4.3.0 try later\r\n"}, K.DEFERRED, 451, False),
        ({"MAIL": b"550 5.7.1 sender refused\r\n"}, K.FAILED, 550, False),
        ({"DOT": b"451 4.3.0 queue full\r\n"}, K.DEFERRED, 451, False),
        ({"DOT": b"554 5.6.0 content rejected\r\n"}, K.FAILED, 554, False),
        ({"DATA": b"554 5.5.1 no valid recipients\r\n"}, K.FAILED, 554, False),
        ({"DOT": CLOSE}, K.UNKNOWN, None, True),
        ({"MAIL": CLOSE}, K.DEFERRED, None, True),
        ({"EHLO": b"250-x\r\n250-PIPELINING\r\n250 SIZE 10\r\n"}, K.FAILED, None, False),
        ({"MAIL": b"not smtp at all\r\n"}, K.DEFERRED, None, True),
    ],
)
async def test_reply_and_fault_table(
    make_config: ConfigFactory,
    dialer: LoopbackDialer,
    replies: Replies,
    kind: K,
    code: int | None,
    connection_error: bool,
    pipelining: bool,
) -> None:
    replies = dict(replies)
    if not pipelining:
        replies.setdefault("EHLO", NO_PIPELINING.replace(b"SIZE 1000", b"SIZE 100000"))
    _, (result,) = await deliver(make_config, dialer, replies)
    assert result.kind is kind, result.transcript
    assert result.code == code
    assert result.connection_error is connection_error
    assert [r.kind for r in result.recipients] == [kind]


async def test_disconnect_in_the_middle_of_the_content_is_deferred(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    # The message must be larger than the socket buffers, or every byte would already have
    # left the process when the server hangs up (and the outcome would be UNKNOWN).
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 24_000
    replies: Replies = {"EHLO": b"250-raw\r\n250 PIPELINING\r\n", "CONTENT": CLOSE}
    async with RawSmtpServer.scripted(replies) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        result = await engine.deliver(ONE, big)
        await engine.aclose()
    assert result.kind is K.DEFERRED, result.transcript
    assert result.connection_error is True
    assert result.details["phase"] == "message"


async def test_message_over_the_advertised_size_is_never_sent(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    ehlo = b"250-raw\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    server, (result,) = await deliver(make_config, dialer, {"EHLO": ehlo})
    assert result.kind is K.FAILED
    assert "SIZE" in result.reply and "10 bytes" in result.reply
    assert b"MAIL" not in server.received and b"DATA" not in server.received


@pytest.mark.parametrize("ehlo", [DEFAULT_EHLO, NO_PIPELINING.replace(b"1000", b"100000")])
async def test_mixed_recipients_each_get_their_outcome(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes
) -> None:
    replies: Replies = {
        "EHLO": ehlo,
        "RCPT": [b"250 2.1.5 ok\r\n", b"450 4.2.1 busy\r\n", b"550 5.1.1 unknown\r\n"],
    }
    server, (result,) = await deliver(make_config, dialer, replies, THREE)
    assert [(r.email, r.kind, r.code) for r in result.recipients] == [
        ("ok@x.test", K.SENT, 250),
        ("later@x.test", K.DEFERRED, 450),
        ("never@x.test", K.FAILED, 550),
    ]
    assert result.kind is K.DEFERRED
    assert len(server.contents) == 1  # DATA went out once, for the accepted recipient


async def test_no_accepted_recipient_means_no_data(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    replies: Replies = {"EHLO": NO_PIPELINING, "RCPT": b"550 5.1.1 unknown\r\n"}
    server, (result,) = await deliver(make_config, dialer, replies, THREE)
    assert result.kind is K.FAILED
    assert b"DATA" not in server.received
    assert b"RSET" in server.received


async def test_auth_535_is_auth_failed(make_config: ConfigFactory, dialer: LoopbackDialer) -> None:
    ehlo = b"250-raw\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n"
    replies: Replies = {"EHLO": ehlo, "AUTH": b"535 5.7.8 Authentication credentials invalid\r\n"}
    server, (result,) = await deliver(
        make_config,
        dialer,
        replies,
        auth=AuthKind.PASSWORD,
        username=USER,
        password=Secret(PASSWORD),
        allow_insecure_auth=True,
    )
    assert result.kind is K.AUTH_FAILED
    assert result.code == 535
    assert b"MAIL" not in server.received
    assert PASSWORD not in result.transcript


async def test_try_again_in_seconds_sets_retry_after(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    replies: Replies = {"RCPT": b"451 4.7.1 Greylisted, please try again in 120 seconds\r\n"}
    _, (result,) = await deliver(make_config, dialer, replies)
    assert result.kind is K.DEFERRED
    assert result.retry_after == 120


@pytest.mark.parametrize(
    ("ehlo", "starttls"),
    [
        (b"250-raw\r\n250-AUTH PLAIN\r\n250 PIPELINING\r\n", None),  # not offered
        (b"250-raw\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n", b"454 4.7.0 TLS not available\r\n"),
    ],
)
async def test_starttls_is_mandatory(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes, starttls: bytes | None
) -> None:
    replies: Replies = {"EHLO": ehlo}
    if starttls is not None:
        replies = {**replies, "STARTTLS": starttls}
    server, (result,) = await deliver(
        make_config,
        dialer,
        replies,
        security=Security.STARTTLS,
        auth=AuthKind.PASSWORD,
        username=USER,
        password=Secret(PASSWORD),
    )
    assert result.kind is K.DEFERRED
    assert result.connection_error is True
    assert "STARTTLS" in result.reply
    for verb in (b"AUTH", b"MAIL", b"RCPT", b"DATA"):
        assert verb not in server.received


async def test_stalling_server_times_out_while_other_mail_flows(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with RawSmtpServer.scripted({"GREETING": STALL}) as stalled, AiosmtpdServer() as healthy:
        slow = SmtpEngine(make_config(stalled.port, timeout_seconds=0.5), dialer=dialer)
        fast = SmtpEngine(make_config(healthy.port), dialer=dialer)
        stuck = asyncio.ensure_future(slow.deliver(ONE, MESSAGE))
        flowing = [await fast.deliver(ONE, MESSAGE) for _ in range(3)]
        assert not stuck.done()
        result = await stuck
        await slow.aclose()
        await fast.aclose()
    assert [r.kind for r in flowing] == [K.SENT] * 3
    assert result.kind is K.DEFERRED
    assert result.connection_error is True
    assert "no reply" in result.reply


async def test_silence_after_the_final_dot_is_unknown(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    # final_reply_timeout is max(4 x timeout, 120 s); a short command timeout alone would
    # not end this, so the final-reply timeout is shortened through the config under test.
    config_timeout = 0.2
    async with RawSmtpServer.scripted({"DOT": STALL}) as server:
        engine = SmtpEngine(make_config(server.port, timeout_seconds=config_timeout), dialer=dialer)
        object.__setattr__(engine.settings, "final_timeout", 0.3)
        result = await engine.deliver(ONE, MESSAGE)
        await engine.aclose()
    assert result.kind is K.UNKNOWN
    assert result.connection_error is True


async def test_pool_reconnects_after_421(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async def handler(conn: RawConnection) -> None:
        if conn.index == 0:
            # First connection: one message, then the server announces it is closing.
            await conn.serve({"MAIL": [b"250 ok\r\n", b"421 4.3.2 closing\r\n"]})
        else:
            await conn.serve()

    async with RawSmtpServer(handler) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        results = [await engine.deliver(ONE, MESSAGE) for _ in range(3)]
        await engine.aclose()
    assert [r.kind for r in results] == [K.SENT] * 3, results[1].transcript
    assert len(server.connections) == 2
    assert len(server.contents) == 3
    assert "retrying on a new one" in results[1].transcript


async def test_pool_reconnects_when_the_idle_connection_was_closed(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.serve({"MAIL": [b"250 ok\r\n", CLOSE]} if conn.index == 0 else None)

    async with RawSmtpServer(handler) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        results = [await engine.deliver(ONE, MESSAGE) for _ in range(2)]
        await engine.aclose()
    assert [r.kind for r in results] == [K.SENT] * 2
    assert len(server.connections) == 2


async def test_connection_is_dropped_after_an_error(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with RawSmtpServer.scripted(
        {"DOT": [b"250 ok\r\n", b"hello?\r\n", b"250 ok\r\n"]}
    ) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        results = [await engine.deliver(ONE, MESSAGE) for _ in range(3)]
        await engine.aclose()
    assert [r.kind for r in results] == [K.SENT, K.DEFERRED, K.SENT]
    assert len(server.connections) == 2


async def test_connection_refused_is_a_deferred_connection_error(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with RawSmtpServer.scripted() as server:
        port = server.port
    engine = SmtpEngine(make_config(port), dialer=dialer)
    result = await engine.deliver(ONE, MESSAGE)
    await engine.aclose()
    assert result.kind is K.DEFERRED
    assert result.connection_error is True
    assert "could not connect" in result.reply
