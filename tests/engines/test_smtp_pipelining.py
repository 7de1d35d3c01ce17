"""Envelopes pipelined behind the previous message: one write per message, same outcomes."""

from __future__ import annotations

import asyncio

import pytest
from tests.engines.conftest import ConfigFactory
from tests.support.smtp_servers import CLOSE, STALL, LoopbackDialer, RawConnection, RawSmtpServer

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.engines.smtp.engine import SmtpEngine

K = OutcomeKind
MESSAGE = b"Subject: pipelined\r\n\r\nbody\r\n"


def envelope(n: int) -> Envelope:
    return Envelope("a@mailgate.test", (f"r{n}@x.test",))


async def test_queued_deliveries_take_one_write_per_message(
    make_config: ConfigFactory, dialer: LoopbackDialer, writes: list[bytes]
) -> None:
    async with RawSmtpServer.scripted() as server:
        engine = SmtpEngine(make_config(server.port, max_connections=1), dialer=dialer)
        results = await asyncio.gather(*(engine.deliver(envelope(n), MESSAGE) for n in range(20)))
        await engine.aclose()
    assert [r.kind for r in results] == [K.SENT] * 20
    assert len(server.connections) == 1
    assert len(server.contents) == 20
    # EHLO, the first envelope, then content + next envelope per message, and QUIT; without
    # pipelining across messages it would be 1 + 2 x 20 + 1.
    assert len(writes) == 1 + 1 + 20 + 1
    assert engine.envelopes_pipelined == 19
    # Each recipient's envelope reached the server in order, behind the previous content.
    rcpts = [c for c in server.connections[0].commands if c.startswith(b"RCPT")]
    assert rcpts == [f"RCPT TO:<r{n}@x.test>\r\n".encode() for n in range(20)]
    assert all(b"\r\n.\r\nMAIL FROM:" in w for w in writes[2:-2])


@pytest.mark.parametrize(
    ("dot", "first"),
    [(CLOSE, K.UNKNOWN), ([b"421 4.3.2 closing\r\n", b"250 ok\r\n"], K.DEFERRED)],
)
async def test_connection_ending_after_the_dot_sends_the_follower_again_on_a_new_one(
    make_config: ConfigFactory,
    dialer: LoopbackDialer,
    dot: object,
    first: K,
) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.serve({"DOT": dot} if conn.index == 0 else None)  # type: ignore[dict-item]

    async with RawSmtpServer(handler) as server:
        engine = SmtpEngine(make_config(server.port, max_connections=1), dialer=dialer)
        results = await asyncio.gather(*(engine.deliver(envelope(n), MESSAGE) for n in range(2)))
        await engine.aclose()
    assert [r.kind for r in results] == [first, K.SENT], results[1].transcript
    assert engine.envelopes_pipelined == 1
    assert "retrying on a new one" in results[1].transcript
    # The follower's content went only over the second connection: no duplicate.
    assert [len(c.contents) for c in server.connections] == [1, 1]


async def test_cancelled_follower_does_not_leak_the_connection(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.serve({"DOT": [STALL]} if conn.index == 0 else None)

    async with RawSmtpServer(handler) as server:
        config = make_config(server.port, max_connections=1, timeout_seconds=0.3)
        engine = SmtpEngine(config, dialer=dialer)
        object.__setattr__(engine.settings, "final_timeout", 0.5)
        first = asyncio.ensure_future(engine.deliver(envelope(0), MESSAGE))
        follower = asyncio.ensure_future(engine.deliver(envelope(1), MESSAGE))
        while engine.envelopes_pipelined == 0:
            await asyncio.sleep(0.01)
        follower.cancel()
        stalled = await first
        later = await asyncio.wait_for(engine.deliver(envelope(2), MESSAGE), timeout=5)
        await engine.aclose()
    assert stalled.kind is K.UNKNOWN
    assert follower.cancelled()
    assert later.kind is K.SENT
    assert len(server.connections) == 2


async def test_a_busy_connection_is_renewed_when_its_budget_is_spent(
    make_config: ConfigFactory, dialer: LoopbackDialer, writes: list[bytes]
) -> None:
    # Deliveries always wait for the one connection, so it is never idle: it is still
    # renewed after max_messages_per_connection, and every message but the first of each
    # connection has its envelope written ahead, behind the previous content.
    options = {"ehlo_name": "client.mailgate.test", "max_messages_per_connection": "4"}
    async with RawSmtpServer.scripted() as server:
        engine = SmtpEngine(
            make_config(server.port, max_connections=1, options=options), dialer=dialer
        )
        results = await asyncio.gather(*(engine.deliver(envelope(n), MESSAGE) for n in range(10)))
        await engine.aclose()
    assert [r.kind for r in results] == [K.SENT] * 10
    assert [len(c.contents) for c in server.connections] == [4, 4, 2]
    assert engine.connections_opened == 3
    assert engine.envelopes_pipelined == 3 + 3 + 1
    assert [c.commands.count(b"QUIT\r\n") for c in server.connections] == [1, 1, 1]
