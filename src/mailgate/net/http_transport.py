"""An httpx transport whose every connection is opened by the injected :class:`Dialer`.

httpx cannot be handed a connected socket, so the seam is one level down: httpcore's
connection pool takes an ``AsyncNetworkBackend``, and :class:`DialerBackend` implements
its ``connect_tcp`` with ``Dialer.connect`` (with the guarded dialer: resolve once, check
every address against the network policy, connect to the checked address only). TLS is
started afterwards by httpcore on that socket with ``server_hostname`` set to the host of
the URL, so certificates are still verified against the configured name (SPEC section 8).

:class:`GuardedTransport` is the small httpx adapter around that pool (what
``httpx.AsyncHTTPTransport`` does, minus proxies and HTTP/2). Errors keep their cause:
``PolicyViolation`` from the dialer passes through unchanged; httpcore errors become the
matching ``httpx`` exception raised ``from`` the original (an ``ssl`` error stays reachable
through ``__cause__``).
"""

from __future__ import annotations

import contextlib
import select
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.streams.tls
import httpcore
import httpx

from mailgate.net.dialer import Dialer

__all__ = ["ConnectEvent", "DialerBackend", "GuardedTransport", "guarded_client"]

#: Called after each dial with the host, the port and the milliseconds it took.
ConnectEvent = Callable[[str, int, float], None]

_DEFAULT_CONNECT_TIMEOUT = 30.0


class _DialedStream(httpcore.AsyncNetworkStream):
    """An httpcore stream over a socket that the dialer connected (anyio underneath)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            with anyio.fail_after(timeout):
                return await self._stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            with anyio.fail_after(timeout):
                await self._stream.send(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError):
            await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                tls = await anyio.streams.tls.TLSStream.wrap(
                    self._stream,
                    ssl_context=ssl_context,
                    hostname=server_hostname,
                    standard_compatible=False,
                )
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _DialedStream(tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._attribute(anyio.streams.tls.TLSAttribute.ssl_object)
        if info == "server_addr":
            return self._attribute(anyio.abc.SocketAttribute.remote_address)
        if info == "client_addr":
            return self._attribute(anyio.abc.SocketAttribute.local_address)
        if info == "is_readable":
            # httpcore asks before reusing an idle connection: readable means the server
            # closed it (or sent something unasked), so the connection is dropped.
            sock = self._attribute(anyio.abc.SocketAttribute.raw_socket)
            return sock is None or _readable(sock.fileno())
        return None

    def _attribute(self, attribute: Any) -> Any:
        # anyio typed attributes (not an ORM's ``extra``).
        return self._stream.extra(attribute, None)  # noqa: S610


def _readable(fd: int) -> bool:
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class DialerBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that connects through ``dialer`` (and nothing else)."""

    def __init__(self, dialer: Dialer, *, on_connect: ConnectEvent | None = None) -> None:
        self._dialer = dialer
        self._on_connect = on_connect

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Dial ``host:port``; ``PolicyViolation`` propagates before any connection attempt."""
        started = time.perf_counter()
        try:
            sock = await self._dialer.connect(
                host, port, timeout=timeout or _DEFAULT_CONNECT_TIMEOUT
            )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}:{port}: {exc.strerror or exc}") from exc
        try:
            stream = await anyio.abc.SocketStream.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        if self._on_connect is not None:
            self._on_connect(host, port, (time.perf_counter() - started) * 1000)
        return _DialedStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by Mailgate's HTTP engines")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
)


@contextlib.contextmanager
def _translated(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpcore.ConnectionNotAvailable as exc:  # pragma: no cover - pool internals
        raise httpx.ConnectError(str(exc), request=request) from exc
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__, request=request) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with _translated(self._request):
                await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over connections opened by ``dialer``, pooled per origin."""

    def __init__(
        self,
        dialer: Dialer,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int = 4,
        on_connect: ConnectEvent | None = None,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            http1=True,
            http2=False,
            network_backend=DialerBackend(dialer, on_connect=on_connect),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _translated(request):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def guarded_client(
    dialer: Dialer,
    *,
    ssl_context: ssl.SSLContext,
    timeout: float,
    max_connections: int = 4,
    on_connect: ConnectEvent | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose connections all go through ``dialer``.

    Redirects are not followed (a redirect could lead past the checked destination with
    the credentials attached) and environment proxies are ignored.
    """
    transport = GuardedTransport(
        dialer, ssl_context=ssl_context, max_connections=max_connections, on_connect=on_connect
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )
