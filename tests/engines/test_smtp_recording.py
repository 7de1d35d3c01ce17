"""A connection's next content waits until its previous message's outcome is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.engines.conftest import ConfigFactory
from tests.support.smtp_servers import LoopbackDialer, RawSmtpServer

from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind
from mailgate.engines.base import OutcomeRecording, outcome_recording
from mailgate.engines.smtp.engine import SmtpEngine

MESSAGE = b"Subject: recorded\r\n\r\nbody\r\n"


def envelope(n: int) -> Envelope:
    return Envelope("a@mailgate.test", (f"r{n}@x.test",))


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout=10)


class Recorder:
    """Plays the worker: one future per delivery, resolved when the test says so."""

    def __init__(self) -> None:
        self.hurried = 0
        self.futures: list[asyncio.Future[None]] = []

    def hurry(self) -> None:
        self.hurried += 1

    def deliver(self, engine: SmtpEngine, n: int) -> Awaitable[DeliveryResult]:
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)

        async def attempt() -> DeliveryResult:
            outcome_recording.set(OutcomeRecording(future, self.hurry))
            return await engine.deliver(envelope(n), MESSAGE)

        return asyncio.create_task(attempt())


async def test_content_waits_for_the_outcomes_on_every_connection_to_be_recorded(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    recorder = Recorder()
    async with RawSmtpServer.scripted() as server:
        engine = SmtpEngine(make_config(server.port, max_connections=2), dialer=dialer)
        tasks = [recorder.deliver(engine, n) for n in range(5)]
        await until(lambda: sum(t.done() for t in tasks) == 2 and recorder.hurried > 0)
        # Two connections, two messages handed over and not recorded: the third waits
        # (its envelope is answered, its content not sent) and hurried the recorder.
        assert len(server.contents) == 2
        recorder.futures[0].set_result(None)
        await until(lambda: len(server.contents) == 3)
        await until(lambda: sum(t.done() for t in tasks) == 3)
        assert len(server.contents) == 3
        for future in recorder.futures:
            if not future.done():
                future.set_result(None)
        results = await asyncio.gather(*tasks)
        await engine.aclose()
    assert [r.kind for r in results] == [OutcomeKind.SENT] * 5
    assert len(server.contents) == 5


async def test_without_a_recording_nothing_waits(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with RawSmtpServer.scripted() as server:
        engine = SmtpEngine(make_config(server.port, max_connections=2), dialer=dialer)
        results = await asyncio.gather(*(engine.deliver(envelope(n), MESSAGE) for n in range(6)))
        await engine.aclose()
    assert [r.kind for r in results] == [OutcomeKind.SENT] * 6
    assert len(server.contents) == 6
