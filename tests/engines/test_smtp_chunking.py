"""RFC 3030 CHUNKING: content as one ``BDAT <n> LAST`` chunk, pipelined in one write."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from tests.engines.conftest import ConfigFactory
from tests.support.smtp_servers import (
    CHUNKING_EHLO,
    CHUNKING_ONLY_EHLO,
    CLOSE,
    STALL,
    LoopbackDialer,
    RawConnection,
    RawSmtpServer,
    Replies,
)

from mailgate.domain import server_schema
from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind
from mailgate.engines.base import OutcomeRecording, outcome_recording
from mailgate.engines.config import ServerConfig
from mailgate.engines.smtp.engine import SmtpEngine
from mailgate.engines.smtp.settings import SessionSettings
from mailgate.engines.smtp.wire import crlf_lines

K = OutcomeKind
MESSAGE = b"Subject: chunked\r\n\r\nbody\r\n"
ONE = Envelope("a@mailgate.test", ("b@mailgate.test",))
THREE = Envelope("a@mailgate.test", ("ok@x.test", "later@x.test", "never@x.test"))
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
BOTH = pytest.mark.parametrize(
    "ehlo", [CHUNKING_EHLO, CHUNKING_ONLY_EHLO], ids=["pipelined", "sequential"]
)


async def deliver(
    make_config: ConfigFactory,
    dialer: LoopbackDialer,
    replies: Replies,
    envelope: Envelope = ONE,
    data: bytes = MESSAGE,
    **overrides: object,
) -> tuple[RawSmtpServer, DeliveryResult]:
    async with RawSmtpServer.scripted(replies) as server:
        engine = SmtpEngine(make_config(server.port, **overrides), dialer=dialer)
        result = await engine.deliver(envelope, data)
        await engine.aclose()
    return server, result


def client_lines(result: DeliveryResult) -> list[str]:
    """The transcript from MAIL on, without the closing of the connection."""
    lines = result.transcript.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("C: MAIL"))
    return lines[start:]


# -- the bytes on the wire --------------------------------------------------------------


async def test_pipelined_transaction_is_one_write_of_envelope_bdat_and_chunk(
    make_config: ConfigFactory, dialer: LoopbackDialer, writes: list[bytes]
) -> None:
    # A line that is a lone dot, lines starting with dots, bare LF and bare CR: BDAT sends
    # CRLF lines, neither dot-stuffed nor ended by a dot.
    data = b"Subject: dots\n\n.\n..two\r\n.leading\rlast"
    chunk = b"Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\nlast\r\n"
    envelope = Envelope("a@mailgate.test", ("b@mailgate.test", "c@mailgate.test"))
    server, result = await deliver(make_config, dialer, {"EHLO": CHUNKING_EHLO}, envelope, data)
    assert result.kind is K.SENT, result.transcript
    n = len(chunk)
    group = (
        f"MAIL FROM:<a@mailgate.test> SIZE={n}\r\n"
        "RCPT TO:<b@mailgate.test>\r\nRCPT TO:<c@mailgate.test>\r\n"
        f"BDAT {n} LAST\r\n"
    ).encode() + chunk
    # EHLO, the whole transaction, QUIT.
    assert writes == [b"EHLO client.mailgate.test\r\n", group, b"QUIT\r\n"]
    assert server.chunks == [chunk]
    assert server.contents == []
    assert b"DATA" not in server.received
    assert server.received.endswith(group + b"QUIT\r\n")


@pytest.mark.parametrize(
    "body",
    [
        b"line one\n.\nline three\r\n",
        b"carriage\r.\r\nreturn\r\n",
        b".\r\n",
        b"..\r\n.leading dot\r\n",
        b"x" * 5000 + b"\r\n",
        b"no final newline",
        "8-bit: caf\u00e9\r\n".encode(),
    ],
)
async def test_the_chunk_is_the_content_as_crlf_lines(
    make_config: ConfigFactory, dialer: LoopbackDialer, body: bytes
) -> None:
    data = b"From: a@mailgate.test\r\nSubject: wire\r\n\r\n" + body
    server, result = await deliver(make_config, dialer, {"EHLO": CHUNKING_EHLO}, data=data)
    assert result.kind is K.SENT
    (chunk,) = server.chunks
    # Bare CR and LF made CRLF, a CRLF at the end; dots left as they are.
    expected = BARE.sub(b"\r\n", data)
    assert chunk == (expected if expected.endswith(b"\r\n") else expected + b"\r\n")
    assert chunk == crlf_lines(data)
    (mail,) = [c for c in server.connections[0].commands if c.startswith(b"MAIL")]
    assert f"SIZE={len(chunk)}".encode() in mail
    assert (b"BODY=8BITMIME" in mail) is (not data.isascii())


async def test_without_pipelining_commands_go_one_by_one_and_bdat_with_its_chunk(
    make_config: ConfigFactory, dialer: LoopbackDialer, writes: list[bytes]
) -> None:
    server, result = await deliver(make_config, dialer, {"EHLO": CHUNKING_ONLY_EHLO}, THREE)
    assert result.kind is K.SENT, result.transcript
    n = len(MESSAGE)
    assert writes[1:] == [
        f"MAIL FROM:<a@mailgate.test> SIZE={n}\r\n".encode(),
        b"RCPT TO:<ok@x.test>\r\n",
        b"RCPT TO:<later@x.test>\r\n",
        b"RCPT TO:<never@x.test>\r\n",
        f"BDAT {n} LAST\r\n".encode() + MESSAGE,
        b"QUIT\r\n",
    ]
    assert server.chunks == [MESSAGE]


@pytest.mark.parametrize("value", ["true", "yes"])
async def test_disable_chunking_sends_data_even_when_chunking_is_offered(
    make_config: ConfigFactory, dialer: LoopbackDialer, value: str
) -> None:
    options = {"ehlo_name": "client.mailgate.test", "disable_chunking": value}
    data = b"Subject: x\r\n\r\n.dot\r\n"
    server, result = await deliver(
        make_config, dialer, {"EHLO": CHUNKING_EHLO}, data=data, options=options
    )
    assert result.kind is K.SENT
    assert server.contents == [b"Subject: x\r\n\r\n..dot\r\n.\r\n"]
    assert server.chunks == []
    assert b"BDAT" not in server.received


async def test_transcript_shows_bdat_and_the_chunk_size(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    replies: Replies = {"EHLO": CHUNKING_EHLO, "RCPT": [b"250 2.1.5 ok\r\n", b"550 5.1.1 no\r\n"]}
    envelope = Envelope("a@mailgate.test", ("b@mailgate.test", "c@mailgate.test"))
    _, result = await deliver(make_config, dialer, replies, envelope)
    n = len(MESSAGE)
    assert client_lines(result) == [
        f"C: MAIL FROM:<a@mailgate.test> SIZE={n}",
        "S: 250 2.1.0 Ok",
        "C: RCPT TO:<b@mailgate.test>",
        "S: 250 2.1.5 ok",
        "C: RCPT TO:<c@mailgate.test>",
        "S: 550 5.1.1 no",
        f"C: BDAT {n} LAST",
        f"C: [{n} bytes]",
        "S: 250 2.0.0 Ok: queued as RAW123",
    ]
    assert result.remote_id == "RAW123"


# -- several messages on one connection -------------------------------------------------


async def test_messages_reuse_the_connection_one_write_each(
    make_config: ConfigFactory, dialer: LoopbackDialer, writes: list[bytes]
) -> None:
    async with RawSmtpServer.scripted({"EHLO": CHUNKING_EHLO}) as server:
        engine = SmtpEngine(make_config(server.port, max_connections=1), dialer=dialer)
        first = await engine.deliver(ONE, MESSAGE)
        envelopes = [Envelope("a@mailgate.test", (f"r{n}@x.test",)) for n in range(5)]
        bodies = [MESSAGE + b"%d\r\n" % n for n in range(5)]
        queued = await asyncio.gather(*map(engine.deliver, envelopes, bodies))
        await engine.aclose()
    assert [r.kind for r in (first, *queued)] == [K.SENT] * 6
    assert len(server.connections) == 1
    # Nothing is written ahead behind a chunk: each message is one write of its own.
    assert engine.envelopes_pipelined == 0
    assert len(writes) == 1 + 6 + 1
    assert server.chunks == [MESSAGE, *bodies]
    rcpts = [c for c in server.connections[0].commands if c.startswith(b"RCPT")]
    assert rcpts[1:] == [f"RCPT TO:<r{n}@x.test>\r\n".encode() for n in range(5)]
    assert "reusing connection" in queued[-1].transcript


async def test_the_group_waits_until_earlier_outcomes_are_recorded(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    # hold() bounds the messages handed over with their outcome unrecorded; pipelined, the
    # chunk leaves with MAIL, so nothing of a held message is written.
    recorded: list[asyncio.Future[None]] = []

    async def attempt(engine: SmtpEngine, n: int) -> DeliveryResult:
        future = asyncio.get_running_loop().create_future()
        recorded.append(future)
        outcome_recording.set(OutcomeRecording(future, lambda: None))
        return await engine.deliver(Envelope("a@mailgate.test", (f"r{n}@x.test",)), MESSAGE)

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            await asyncio.sleep(0.005)

    async with RawSmtpServer.scripted({"EHLO": CHUNKING_EHLO}) as server:
        engine = SmtpEngine(make_config(server.port, max_connections=2), dialer=dialer)
        tasks = [asyncio.create_task(attempt(engine, n)) for n in range(4)]
        await asyncio.wait_for(until(lambda: sum(t.done() for t in tasks) == 2), 10)
        await asyncio.sleep(0.05)
        assert len(server.chunks) == 2
        assert server.received.count(b"MAIL FROM") == 2
        recorded[0].set_result(None)
        await asyncio.wait_for(until(lambda: len(server.chunks) == 3), 10)
        for future in recorded:
            if not future.done():
                future.set_result(None)
        results = await asyncio.gather(*tasks)
        await engine.aclose()
    assert [r.kind for r in results] == [K.SENT] * 4
    assert len(server.chunks) == 4


# -- refusals ---------------------------------------------------------------------------


@BOTH
async def test_refused_recipient_fails_and_the_others_are_delivered(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes
) -> None:
    replies: Replies = {
        "EHLO": ehlo,
        "RCPT": [b"250 2.1.5 ok\r\n", b"450 4.2.1 busy\r\n", b"550 5.1.1 unknown\r\n"],
    }
    server, result = await deliver(make_config, dialer, replies, THREE)
    assert [(r.email, r.kind, r.code) for r in result.recipients] == [
        ("ok@x.test", K.SENT, 250),
        ("later@x.test", K.DEFERRED, 450),
        ("never@x.test", K.FAILED, 550),
    ]
    assert server.chunks == [MESSAGE]


@BOTH
@pytest.mark.parametrize(("code", "kind"), [(550, K.FAILED), (451, K.DEFERRED)])
async def test_refused_mail_decides_every_recipient_and_the_connection_is_reset(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes, code: int, kind: K
) -> None:
    pipelined = ehlo == CHUNKING_EHLO
    replies: Replies = {
        "EHLO": ehlo,
        "MAIL": [b"%d 5.7.1 sender refused\r\n" % code, b"250 2.1.0 Ok\r\n"],
        # Pipelined, the RCPTs and BDAT of the refused transaction are answered too.
        "RCPT": [b"503 5.5.1 need MAIL\r\n"] * 3 * pipelined + [b"250 2.1.5 Ok\r\n"],
        "BDAT": [b"503 5.5.1 no transaction\r\n"] * pipelined + [b"250 2.0.0 Ok\r\n"],
    }
    async with RawSmtpServer.scripted(replies) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        refused = await engine.deliver(THREE, MESSAGE)
        after = await engine.deliver(ONE, MESSAGE)
        await engine.aclose()
    assert [(r.kind, r.code) for r in refused.recipients] == [(kind, code)] * 3
    assert refused.connection_error is False
    commands = [c.split()[0] for c in server.connections[0].commands]
    if pipelined:
        # The chunk was on the wire: the server read and discarded it, its 503 changed
        # nothing; RSET made the connection reusable.
        assert commands[1:6] == [b"MAIL", b"RCPT", b"RCPT", b"RCPT", b"BDAT"]
        assert "S: 503 5.5.1 no transaction" in refused.transcript
    else:
        assert commands[1:3] == [b"MAIL", b"RSET"]
    assert commands.count(b"RSET") == 1
    assert after.kind is K.SENT, after.transcript
    assert len(server.connections) == 1


@BOTH
async def test_every_recipient_refused_keeps_its_own_reply(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes
) -> None:
    replies: Replies = {
        "EHLO": ehlo,
        "RCPT": [b"450 4.2.1 busy\r\n", b"550 5.1.1 unknown\r\n", b"551 5.1.6 moved\r\n"],
        "BDAT": b"554 5.5.1 no valid recipients\r\n",
    }
    server, result = await deliver(make_config, dialer, replies, THREE)
    assert [(r.kind, r.code) for r in result.recipients] == [
        (K.DEFERRED, 450),
        (K.FAILED, 550),
        (K.FAILED, 551),
    ]
    assert b"RSET" in server.received
    # Pipelined, the chunk went out with the envelope; one by one, it never left.
    assert len(server.chunks) == (1 if ehlo == CHUNKING_EHLO else 0)


@BOTH
@pytest.mark.parametrize(
    ("reply", "kind"),
    [(b"452 4.3.1 insufficient storage\r\n", K.DEFERRED), (b"554 5.6.0 rejected\r\n", K.FAILED)],
)
async def test_refused_chunk_decides_the_accepted_recipients(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes, reply: bytes, kind: K
) -> None:
    rcpt = [b"250 2.1.5 ok\r\n", b"550 5.1.1 unknown\r\n", b"250 2.1.5 ok\r\n"]
    replies: Replies = {"EHLO": ehlo, "RCPT": rcpt}
    async with RawSmtpServer.scripted({**replies, "BDAT": [reply, b"250 ok\r\n"]}) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        envelope = Envelope("a@mailgate.test", ("ok@x.test", "never@x.test"))
        result = await engine.deliver(envelope, MESSAGE)
        after = await engine.deliver(ONE, MESSAGE)
        await engine.aclose()
    code = int(reply[:3])
    assert [(r.kind, r.code) for r in result.recipients] == [(kind, code), (K.FAILED, 550)]
    assert result.connection_error is False
    # The transaction failed: RSET (RFC 5321 section 4.1.1.5) before the connection is used
    # again, for the next message.
    commands = [c.split()[0] for c in server.connections[0].commands]
    assert commands[1:6] == [b"MAIL", b"RCPT", b"RCPT", b"BDAT", b"RSET"]
    assert after.kind is K.SENT
    assert len(server.connections) == 1


@BOTH
@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "BDAT"])
async def test_421_anywhere_defers_and_closes_the_connection(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes, verb: str
) -> None:
    async def handler(conn: RawConnection) -> None:
        first = {"EHLO": ehlo, verb: b"421 4.3.2 closing\r\n"}
        await conn.serve(first if conn.index == 0 else {"EHLO": ehlo})

    async with RawSmtpServer(handler) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        result = await engine.deliver(ONE, MESSAGE)
        after = await engine.deliver(ONE, MESSAGE)
        await engine.aclose()
    assert (result.kind, result.code) == (K.DEFERRED, 421), result.transcript
    assert after.kind is K.SENT
    assert len(server.connections) == 2
    assert b"RSET" not in server.received


# -- a lost connection or a silence -----------------------------------------------------


@BOTH
async def test_connection_lost_after_the_chunk_is_unknown(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes
) -> None:
    server, result = await deliver(make_config, dialer, {"EHLO": ehlo, "BDAT": CLOSE})
    assert result.kind is K.UNKNOWN, result.transcript
    assert result.connection_error is True
    assert result.details["phase"] == "final"
    assert server.chunks == [MESSAGE]


async def test_connection_lost_before_any_reply_to_the_pipelined_group_is_unknown(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    # The chunk left with MAIL: a server may process it before it sends any reply (RFC
    # 2920 section 3.2), so silence from MAIL on cannot prove nothing was accepted.
    _, result = await deliver(make_config, dialer, {"EHLO": CHUNKING_EHLO, "MAIL": CLOSE})
    assert result.kind is K.UNKNOWN, result.transcript
    assert result.details["phase"] == "final"


@BOTH
async def test_silence_after_the_chunk_is_unknown(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes
) -> None:
    async with RawSmtpServer.scripted({"EHLO": ehlo, "BDAT": STALL}) as server:
        engine = SmtpEngine(make_config(server.port, timeout_seconds=0.2), dialer=dialer)
        object.__setattr__(engine.settings, "final_timeout", 0.3)
        result = await engine.deliver(ONE, MESSAGE)
        await engine.aclose()
    assert result.kind is K.UNKNOWN
    assert result.connection_error is True
    assert "no reply" in result.reply


@BOTH
async def test_disconnect_in_the_middle_of_the_chunk_is_deferred(
    make_config: ConfigFactory, dialer: LoopbackDialer, ehlo: bytes
) -> None:
    # Larger than the socket buffers: the chunk has not left the process when the server
    # hangs up, so the server cannot have the message.
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 24_000
    unlimited = ehlo.replace(b"250-SIZE 10485760\r\n", b"")
    replies: Replies = {"EHLO": unlimited, "CONTENT": CLOSE}
    _, result = await deliver(make_config, dialer, replies, data=big)
    assert result.kind is K.DEFERRED, result.transcript
    assert result.connection_error is True
    assert result.details["phase"] == "message"


async def test_message_over_the_advertised_size_is_never_sent(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    ehlo = CHUNKING_EHLO.replace(b"SIZE 10485760", b"SIZE 10")
    server, result = await deliver(make_config, dialer, {"EHLO": ehlo})
    assert result.kind is K.FAILED
    assert f"{len(MESSAGE)} bytes" in result.reply
    assert b"MAIL" not in server.received and b"BDAT" not in server.received


# -- the option and the connection test -------------------------------------------------


def test_disable_chunking_is_a_known_flag() -> None:
    assert server_schema.option_problems({"disable_chunking": "true"}) == []
    assert server_schema.option_problems({"disable_chunking": "sometimes"}) == [
        ("options.disable_chunking", "must be true or false")
    ]
    config = ServerConfig(key="k", host="smtp.example.com")
    assert SessionSettings.from_config(config).chunking is True
    off = ServerConfig(key="k", host="smtp.example.com", options={"disable_chunking": "on"})
    assert SessionSettings.from_config(off).chunking is False


async def test_connection_test_lists_chunking(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with RawSmtpServer.scripted({"EHLO": CHUNKING_EHLO}) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        report = await engine.probe()
        await engine.aclose()
    assert report.ok, report
    assert report.server is not None
    assert "CHUNKING" in report.server.extensions
