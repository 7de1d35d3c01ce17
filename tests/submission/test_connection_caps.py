"""A connection flood on the submission port: capped in all and per client address, answered
421, logged once per interval, and the API next to it keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from mailgate.runtime import Context
from mailgate.submission.gate import Notices, quiet_accept_errors
from mailgate.web.app import create_app
from tests.submission.conftest import Serve
from tests.web.live_http import serving


class Flood:
    """Idle connections held open; each remembers the first line the server sent."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(self, port: int, *, source: str = "127.0.0.1") -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        self.writers.append(writer)
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
        except (OSError, TimeoutError) as exc:
            return repr(exc)
        return line.decode().strip()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self.writers.clear()


@pytest.fixture
async def flood() -> AsyncIterator[Flood]:
    f = Flood()
    yield f
    await f.close()


async def test_one_client_gets_421_past_its_cap_and_others_still_connect(
    serve: Serve, flood: Flood
) -> None:
    async with serve(max_connections=50, max_connections_per_client=5) as server:
        greetings = [await flood.connect(server.port) for _ in range(8)]
        assert all(g.startswith("220 ") for g in greetings[:5]), greetings
        assert all(g.startswith("421 4.7.0") for g in greetings[5:]), greetings
        # Another address is not held back by the first one's connections.
        assert (await flood.connect(server.port, source="127.0.0.2")).startswith("220 ")
        # A closed connection frees its place.
        flood.writers[0].close()
        await flood.writers[0].wait_closed()
        await asyncio.sleep(0.1)
        assert (await flood.connect(server.port)).startswith("220 ")


async def test_a_flood_past_the_global_cap_is_refused_logged_once_and_the_api_answers(
    serve: Serve, flood: Flood, ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mailgate.submission")
    async with (
        serve(max_connections=40, max_connections_per_client=1000) as server,
        serving(create_app(ctx)) as http_port,
    ):
        # 300 connections from 30 addresses, in waves of 50 (within the listen backlog):
        # 40 are served, 260 refused.
        sources = [f"127.0.0.{n}" for n in range(2, 32)]
        greetings: list[str] = []
        for _ in range(6):
            greetings += await asyncio.gather(
                *(flood.connect(server.port, source=sources[n % 30]) for n in range(50))
            )
        served = [g for g in greetings if g.startswith("220 ")]
        refused = [g for g in greetings if g.startswith("421 4.7.0")]
        others = [g for g in greetings if g not in served and g not in refused]
        assert (len(served), len(refused)) == (40, 260), others[:5]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as c:
            started = time.monotonic()
            assert (await c.get("/healthz", timeout=5)).text == "ok"
            assert time.monotonic() - started < 2
    warnings = [r for r in caplog.records if "refused connections" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_accept_failures_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What asyncio reports, about once a second per listener, when accept() hits EMFILE.
    caplog.set_level(logging.DEBUG)
    now = [0.0]
    loop = asyncio.get_running_loop()
    restore = quiet_accept_errors(loop, Notices(interval=60, clock=lambda: now[0]))
    try:
        for second in range(120):
            now[0] = float(second)
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                }
            )
    finally:
        restore()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "Too many open files" in lines[0]
    assert "59 more since the last warning" in lines[1]
    assert all(r.exc_info is None for r in caplog.records)
    assert loop.get_exception_handler() is None


async def test_while_the_listener_runs_accept_failures_do_not_flood_the_log(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    async with serve():
        for _ in range(200):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                }
            )
    failures = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert failures[0].levelno == logging.WARNING and failures[0].exc_info is None
    assert loop.get_exception_handler() is None  # stop() put the loop's handler back


async def test_a_cap_the_descriptor_limit_cannot_hold_is_warned_about_at_start(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no descriptor limit in this process")
    caplog.set_level(logging.WARNING, logger="mailgate.submission")
    async with serve(max_connections=50):
        pass
    assert not [r for r in caplog.records if "file descriptors" in r.getMessage()]
    async with serve(max_connections=soft):
        pass
    found = [r.getMessage() for r in caplog.records if "file descriptors" in r.getMessage()]
    assert len(found) == 1 and "MAILGATE_SMTP_MAX_CONNECTIONS" in found[0], found
