"""What reaches the wire: CRLF lines only, dot-stuffing, one message; transcript redaction."""

from __future__ import annotations

import re

import pytest
from tests.engines.conftest import ConfigFactory
from tests.support.smtp_servers import LoopbackDialer, RawSmtpServer

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.engines.smtp.engine import SmtpEngine
from mailgate.engines.smtp.transcript import REDACTED, Transcript
from mailgate.engines.smtp.wire import encode_command, encode_message

HEADER = b"From: a@mailgate.test\r\nTo: b@mailgate.test\r\nSubject: wire\r\n\r\n"
BODIES = [
    b"line one\n.\nline three\r\n",
    b"carriage\r.\r\nreturn\r\n",
    b"mixed\n.\r\nend\r\n",
    b".\r\n",
    b"..\r\n.leading dot\r\n",
    b"x" * 5000 + b"\r\n",
    b"no final newline",
]
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@pytest.mark.parametrize("body", BODIES)
async def test_content_reaches_the_wire_as_one_crlf_message(
    make_config: ConfigFactory, dialer: LoopbackDialer, body: bytes
) -> None:
    async with RawSmtpServer.scripted() as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        result = await engine.deliver(
            Envelope("a@mailgate.test", ("b@mailgate.test",)), HEADER + body
        )
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT
    (content,) = server.contents
    assert content.endswith(b"\r\n.\r\n")
    assert content.count(b"\r\n.\r\n") == 1
    assert BARE.search(server.received) is None
    lines = content[:-3].split(b"\r\n")[:-1]
    # Dot-stuffed: no line of the content is a lone dot; unstuffing gives the lines back.
    assert b"." not in lines
    unstuffed = [line[1:] if line.startswith(b".") else line for line in lines]
    expected = BARE.sub(b"\r\n", HEADER + body)
    assert b"\r\n".join(unstuffed) + b"\r\n" == (
        expected if expected.endswith(b"\r\n") else expected + b"\r\n"
    )


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),
        (b".a\r\n", b"..a\r\n.\r\n"),
        (b"a\r\n.\r\n", b"a\r\n..\r\n.\r\n"),
        (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
    ],
)
def test_encode_message(data: bytes, wire: bytes) -> None:
    assert encode_message(data) == wire


@pytest.mark.parametrize("bad", ["RCPT TO:<a@b>\r\nDATA", "MAIL FROM:<a\n@b>", "X\x00"])
def test_commands_never_carry_line_breaks(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_command(bad)


async def test_injected_recipient_is_failed_not_sent(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    envelope = Envelope("a@mailgate.test", ("ok@mailgate.test", "x@y\r\nDATA"))
    async with RawSmtpServer.scripted() as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        result = await engine.deliver(envelope, HEADER + b"hi\r\n")
        await engine.aclose()
    assert [r.kind for r in result.recipients] == [OutcomeKind.SENT, OutcomeKind.FAILED]
    assert server.received.count(b"RCPT") == 1


def test_transcript_scrubs_secrets_and_their_base64() -> None:
    transcript = Transcript(secrets=["hunter2-secret"])
    transcript.server(535, ["5.7.8 bad password hunter2-secret", "aHVudGVyMi1zZWNyZXQ="])
    transcript.client_redacted("AUTH PLAIN")
    text = transcript.render()
    assert "hunter2-secret" not in text and "aHVudGVyMi1zZWNyZXQ=" not in text
    assert text.splitlines() == [
        f"S: 535-5.7.8 bad password {REDACTED}",
        f"S: 535 {REDACTED}",
        f"C: AUTH PLAIN {REDACTED}",
    ]
