"""A real uvicorn server on loopback for a test's app, a raw HTTP/1.1 client and an RSS probe.

The server runs on the test's own event loop (the app's context lives there); the client
writes request heads and bodies by hand, so a test controls exactly how much of a body has
been sent when the answer arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tests.support.smtp_servers import free_port


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1; yields the port."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        **options,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class Upload:
    """One request sent by hand: the answer, and how much body had gone out when it came."""

    status: int = 0
    head: str = ""
    body: bytes = b""
    sent: int = 0
    sent_at_answer: int = -1
    error: str = ""
    _done: asyncio.Event = field(default_factory=asyncio.Event)


async def upload(
    port: int,
    path: str,
    *,
    size: int,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    chunk: int = 256 * 1024,
    pause: float = 0.0,
    timeout: float = 20.0,
    content_type: str = "application/json",
) -> Upload:
    """POST ``size`` bytes of JSON-ish filler to ``path``, ``chunk`` bytes at a time with
    ``pause`` seconds between chunks, stopping as soon as the server answers."""
    result = Upload()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {content_type}"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    piece = b"x" * chunk

    async def read_answer() -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            result.sent_at_answer = result.sent
            result.head = head.decode("latin-1")
            result.status = int(result.head.split(" ", 2)[1])
            length = 0
            for line in result.head.split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            result.body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError) as exc:
            result.error = repr(exc)
        finally:
            result._done.set()

    async def write_body() -> None:
        try:
            while result.sent < size and not result._done.is_set():
                part = piece[: size - result.sent]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                await writer.drain()
                result.sent += len(part)
                if pause:
                    await asyncio.sleep(pause)
            if chunked and not result._done.is_set():
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except OSError:
            pass  # the server closed the connection after answering

    answer = asyncio.create_task(read_answer())
    sending = asyncio.create_task(write_body())
    try:
        await asyncio.wait_for(asyncio.shield(answer), timeout)
    finally:
        sending.cancel()
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        with contextlib.suppress(asyncio.CancelledError):
            await answer
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return result


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The highest resident set size of this process while the block runs (sampled)."""

    def __init__(self) -> None:
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    @property
    def growth(self) -> int:
        return self.peak - self.start

    def __enter__(self) -> PeakRss:
        self.start = self.peak = _rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
