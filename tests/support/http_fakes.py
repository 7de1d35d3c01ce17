"""A loopback HTTP/1.1 server for the HTTP engine tests (SendGrid, Graph, token endpoints).

:class:`HttpServer` listens on 127.0.0.1 (plain, or TLS with a test certificate), parses
each request (request line, headers, ``Content-Length`` body), records it and answers with
what its handler returns: an :class:`HttpResponse`, :data:`STALL` (never answer, to make
the client time out after sending) or :data:`DROP` (close without answering). Keep-alive
is supported, so connection reuse is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.support.smtp_servers import free_port

STALL = "stall"
DROP = "drop"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class HttpResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, **headers: str) -> HttpResponse:
        return cls(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json"}
            | {k.replace("_", "-"): v for k, v in headers.items()},
        )


Answer = HttpResponse | str
Handler = Callable[[HttpRequest], Awaitable[Answer]]

_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class HttpServer:
    """See the module docstring; ``requests`` lists what was received, ``connections`` counts."""

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.port = 0
        self.requests: list[HttpRequest] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    def answering(cls, *answers: Answer, ssl_context: ssl.SSLContext | None = None) -> HttpServer:
        """A server giving ``answers`` in turn (the last one repeats)."""
        queue = list(answers)

        async def handler(request: HttpRequest) -> Answer:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        return cls(handler, ssl_context=ssl_context)

    def url(self, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    async def __aenter__(self) -> HttpServer:
        self.port = free_port()
        self._server = await asyncio.start_server(
            self._on_client, "127.0.0.1", self.port, ssl=self.ssl_context
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                self.requests.append(request)
                answer = await self.handler(request)
                if answer == STALL:
                    await asyncio.sleep(3600)
                if answer == DROP or not isinstance(answer, HttpResponse):
                    break
                writer.write(_render(answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return HttpRequest(method, target, headers, body)


def _render(response: HttpResponse) -> bytes:
    reason = _REASONS.get(response.status, "Status")
    head = [f"HTTP/1.1 {response.status} {reason}", f"Content-Length: {len(response.body)}"]
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
