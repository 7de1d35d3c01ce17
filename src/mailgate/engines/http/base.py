"""Plumbing shared by the HTTP engines (SendGrid, Microsoft Graph).

* :func:`api_base` checks a configured ``api_base_url`` with
  :func:`mailgate.net.urls.checked_url`: HTTPS, or plain HTTP only to a loopback address
  (a local test server), no credentials, query or fragment in it.
* :class:`HttpExchange` sends one request through an ``httpx.AsyncClient`` (by default one
  that dials through the injected dialer, so the network policy applies) and reports either
  the response or how the request failed, with a short transcript that never contains
  headers, bodies or credentials.
* :func:`failure_result` and :func:`status_result` turn those into
  :class:`~mailgate.domain.delivery.DeliveryResult` values with the HTTP table of
  :mod:`mailgate.domain.outcomes`.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind
from mailgate.domain.outcomes import (
    classify_http_failure,
    classify_http_status,
    parse_http_retry_after,
)
from mailgate.engines.config import ServerConfig
from mailgate.errors import PolicyViolation
from mailgate.net.dialer import Dialer
from mailgate.net.http_transport import guarded_client
from mailgate.net.tls import client_context, describe_tls_error
from mailgate.net.urls import checked_url

__all__ = [
    "HttpExchange",
    "Sent",
    "api_base",
    "build_client",
    "failure_result",
    "retry_after_of",
    "status_result",
]


logger = logging.getLogger("mailgate.engines.http")


def api_base(config: ServerConfig, default: str) -> str:
    """The API base URL of ``config`` without a trailing slash; raises ConfigurationError."""
    return checked_url(config.key, config.api_base_url or default, field="api_base_url")


def build_client(config: ServerConfig, *, dialer: Dialer) -> httpx.AsyncClient:
    """A client for the provider's API: the server's TLS settings, its connection limit."""
    return guarded_client(
        dialer,
        ssl_context=client_context(config),
        timeout=config.timeout_seconds,
        max_connections=config.max_connections,
    )


@dataclass(slots=True)
class Sent:
    """What happened to one request: a response, or a failure before one arrived."""

    response: httpx.Response | None
    kind: OutcomeKind = OutcomeKind.SENT
    message: str = ""
    tls_version: str | None = None
    transcript: list[str] = field(default_factory=list)
    policy: bool = False


class HttpExchange:
    """Sends single requests and records a transcript free of secrets."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, method: str, url: str, **kwargs: Any) -> Sent:
        """Send one request; never raises for network failures (they are in the result)."""
        line = f"{method} {url}"
        try:
            response = await self.client.request(method, url, **kwargs)
        except PolicyViolation as exc:
            message = f"refused by the network policy: {exc}"
            return _failed(OutcomeKind.DEFERRED, message, line, policy=True)
        except httpx.TransportError as exc:
            outcome = classify_http_failure(request_sent=_request_sent(exc))
            return _failed(outcome.kind, _describe(exc, url), line)
        ssl_object = _ssl_object(response)
        version = ssl_object.version() if ssl_object is not None else None
        transcript = [f"> {line}", f"< HTTP {response.status_code} {response.reason_phrase}"]
        return Sent(response, tls_version=version, transcript=transcript)


def _failed(kind: OutcomeKind, message: str, line: str, *, policy: bool = False) -> Sent:
    return Sent(
        None, kind=kind, message=message, transcript=[f"> {line}", f"* {message}"], policy=policy
    )


def _request_sent(exc: httpx.TransportError) -> bool:
    # httpcore writes the whole HTTP/1.1 request before it reads the response: a read that
    # times out or finds the connection closed comes after the provider had the message.
    return isinstance(exc, httpx.ReadTimeout | httpx.ReadError | httpx.RemoteProtocolError)


def _describe(exc: httpx.TransportError, url: str) -> str:
    host = httpx.URL(url).host
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return describe_tls_error(cause, host=host, min_version="1.2")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting to {host}"
    if isinstance(exc, httpx.ReadTimeout):
        return f"{host} accepted the request but did not answer in time"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out talking to {host}"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return f"{host} closed the connection before answering"
    return f"could not connect to {host}: {exc}"


def _ssl_object(response: httpx.Response) -> ssl.SSLObject | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    value = stream.get_extra_info("ssl_object")
    return value if isinstance(value, ssl.SSLObject) else None


def retry_after_of(response: httpx.Response) -> float | None:
    """Seconds from ``Retry-After`` (RFC 9110 10.2.3), when the response carries one."""
    return parse_http_retry_after(response.headers.get("retry-after"), now=time.time())


def failure_result(
    envelope: Envelope,
    sent: Sent,
    *,
    started: float,
    phase: str = "request",
    retry_after: float | None = None,
) -> DeliveryResult:
    """The result of a request that got no response (``sent.response is None``)."""
    return DeliveryResult.whole(
        envelope,
        sent.kind,
        reply=sent.message,
        retry_after=retry_after,
        transcript="\n".join(sent.transcript),
        connection_error=True,
        duration_ms=(time.perf_counter() - started) * 1000,
        details={"phase": phase},
    )


def status_result(
    envelope: Envelope,
    sent: Sent,
    *,
    reply: str,
    started: float,
    retry_after: float | None = None,
    remote_id: str | None = None,
    kind: OutcomeKind | None = None,
    transcript: list[str] | None = None,
) -> DeliveryResult:
    """The result of a response, classified by its status unless ``kind`` is given."""
    assert sent.response is not None
    status = sent.response.status_code
    outcome = classify_http_status(status, retry_after=retry_after)
    return DeliveryResult.whole(
        envelope,
        kind or outcome.kind,
        code=status,
        reply=reply,
        retry_after=outcome.retry_after,
        tls_version=sent.tls_version,
        transcript="\n".join(transcript if transcript is not None else sent.transcript),
        remote_id=remote_id if outcome.kind is OutcomeKind.SENT else None,
        connection_error=outcome.connection_error,
        duration_ms=(time.perf_counter() - started) * 1000,
        details={"phase": "request", "http_status": str(status)},
    )


def log_result(engine: str, config: ServerConfig, result: DeliveryResult) -> DeliveryResult:
    """A DEBUG line per delivery (never headers, bodies or credentials); returns ``result``."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s delivery via %s: %s (status %s, %.1f ms)",
            engine,
            config.key,
            result.kind,
            result.code,
            result.duration_ms,
        )
    return result
