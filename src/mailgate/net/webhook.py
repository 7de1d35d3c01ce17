"""Posting webhook events over HTTP(S) under the network policy, pinned to the checked address.

Every request goes through these steps:

1. ``parse_url``: ``http`` or ``https`` only, a host, no user-info, no fragment, no control
   characters;
2. ``check_destination``: the host is resolved once and *every* address is checked with
   :meth:`NetworkPolicy.resolve_and_check` (link-local and metadata addresses always refused;
   loopback and private ranges only when the instance allow-list names them). Plain ``http``
   is accepted only when every address (or the ``host:port``) is named by the allow-list —
   a cleartext POST must not cross the internet;
3. the request is sent to the *first checked address* (the URL's host is replaced by that IP
   literal), with ``Host`` set to the configured name and, for ``https``, the TLS SNI and
   certificate verification done against the configured name (httpcore's ``sni_hostname``
   extension). A second DNS answer therefore cannot redirect the request (no rebinding);
4. redirects are never followed, proxies from the environment are ignored, keep-alive is off
   (a pooled connection to one IP must never carry another host's request), the whole
   exchange has one deadline, and only a short snippet of the response body is read.

The request headers carry the signature; nothing here logs headers or bodies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from mailgate.domain.webhooks import REQUEST_TIMEOUT_SECONDS, SNIPPET_CHARS
from mailgate.errors import PolicyViolation
from mailgate.net.guarded import SystemResolver
from mailgate.net.policy import IPAddress, NetworkPolicy, Resolver, normalise_host

HTTP_REFUSED = (
    "http:// is accepted only for hosts named in the instance allow-list "
    "(MAILGATE_ALLOWED_NETWORKS); use an https:// URL"
)
INSECURE_SCHEME = "insecure_scheme"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """A checked webhook URL, split into what the request needs."""

    scheme: str
    host: str  # lower-case ASCII name, or an IP address in canonical text
    port: int
    target: str  # path and query
    host_header: str

    @property
    def is_ip(self) -> bool:
        return not isinstance(normalise_host(self.host), str)


def parse_url(url: str) -> WebhookUrl:
    """Split and validate ``url``; ``ValueError`` with a message naming the problem."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain a user name or password")
    if parts.fragment:
        raise ValueError("must not contain a fragment (#...)")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    host = normalise_host(parts.hostname or "")
    if host is None:
        raise ValueError("must name a valid host")
    text = host if isinstance(host, str) else str(host)
    shown = f"[{text}]" if ":" in text else text
    header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebhookUrl(scheme=scheme, host=text, port=port, target=target, host_header=header)


def _listed(allowed: Sequence[str], url: WebhookUrl, addresses: Sequence[IPAddress]) -> bool:
    """Whether the allow-list names every address (a CIDR) or the host or address and port."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    pairs: set[tuple[str, int]] = set()
    for entry in allowed:
        text = entry.strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        host, _, port = text.rpartition(":")
        name = normalise_host(host.strip("[]")) if host else None
        if name is not None and port.isdigit():
            pairs.add((str(name), int(port)))
    if (url.host, url.port) in pairs:
        return True
    return all(
        (str(a), url.port) in pairs or any(a in network for network in networks) for a in addresses
    )


async def check_destination(
    url: WebhookUrl, *, policy: NetworkPolicy, allowed: Sequence[str], resolver: Resolver
) -> list[IPAddress]:
    """The checked addresses of ``url`` (see the module docstring).

    Raises :class:`PolicyViolation` when refused and ``socket.gaierror`` when the host does
    not resolve.
    """
    addresses = await policy.resolve_and_check(url.host, url.port, resolver=resolver)
    if url.scheme == "http" and not _listed(allowed, url, addresses):
        raise PolicyViolation(HTTP_REFUSED, code=INSECURE_SCHEME)
    return addresses


@dataclass(frozen=True, slots=True)
class PostResult:
    """What one POST came to: an HTTP status, or an error before any status."""

    status: int | None
    snippet: str
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _pinned(url: WebhookUrl, address: IPAddress) -> str:
    host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    return f"{url.scheme}://{host}:{url.port}{url.target}"


async def _snippet(response: httpx.Response) -> str:
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= SNIPPET_CHARS * 4:
            break
    text = data.decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() else " " for ch in text)[:SNIPPET_CHARS]


class WebhookPoster:
    """POSTs signed bodies to webhook URLs; one instance per dispatcher, closed with it.

    ``verify`` is the TLS trust (a context trusting a test CA in tests); ``resolver`` resolves
    host names (the system resolver by default).
    """

    def __init__(
        self,
        *,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        max_connections: int = 16,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver | None = None,
    ) -> None:
        self.timeout = timeout
        self.resolver: Resolver = resolver or SystemResolver()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
        )

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        policy: NetworkPolicy,
        allowed: Sequence[str],
    ) -> PostResult:
        """POST ``body``; never raises for a delivery problem (it is in ``error``)."""
        started = time.monotonic()
        status: int | None = None
        snippet = ""
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                target = parse_url(url)
                addresses = await check_destination(
                    target, policy=policy, allowed=allowed, resolver=self.resolver
                )
                extensions = {}
                if target.scheme == "https" and not target.is_ip:
                    extensions["sni_hostname"] = target.host
                request = self._client.build_request(
                    "POST",
                    _pinned(target, addresses[0]),
                    content=body,
                    headers={**headers, "Host": target.host_header},
                    extensions=extensions,
                )
                response = await self._client.send(request, stream=True)
                try:
                    status = response.status_code
                    snippet = await _snippet(response)
                finally:
                    await response.aclose()
        except PolicyViolation as exc:
            error = f"refused by the network policy: {exc}"
        except socket.gaierror:
            error = "the host name could not be resolved"
        except (TimeoutError, httpx.TimeoutException):
            error = f"no response within {self.timeout:g} s"
        except ValueError as exc:
            error = f"invalid URL: {exc}"
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:SNIPPET_CHARS]
        if error is None and status is not None and not 200 <= status < 300:
            error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        elapsed = (time.monotonic() - started) * 1000
        return PostResult(status=status, snippet=snippet, error=error, duration_ms=elapsed)

    async def aclose(self) -> None:
        await self._client.aclose()
