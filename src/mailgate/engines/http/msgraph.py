"""The Microsoft Graph engine: ``POST /v1.0/users/{sender_upn}/sendMail`` with MIME content.

Graph accepts a whole MIME message when the body is its base64 encoding and the request's
``Content-Type`` is ``text/plain`` (learn.microsoft.com, "user: sendMail", "Send a message
in MIME format"). The access token comes from the Microsoft identity platform through an
:class:`~mailgate.engines.oauth.OAuthTokenSource` (client-credentials or password grant,
scope ``https://graph.microsoft.com/.default``), cached until shortly before it expires.

=========================  ============  ==================================================
event                      outcome       notes
=========================  ============  ==================================================
202                        SENT          Graph returns no message id; ``request-id`` is kept
                                         in ``details``
401                        (refresh)     the token is dropped and the request sent once more
401 after the refresh, 403 AUTH_FAILED   the server is held until its settings are fixed
400 (and other 4xx)        FAILED        reply: ``error.code: error.message``
429, 503 (and other 5xx)   DEFERRED      ``Retry-After`` honoured
token refused              AUTH_FAILED   ``invalid_grant``, ``invalid_client``...
token endpoint down        DEFERRED      connection_error, phase ``token``
no response / after send   DEFERRED / UNKNOWN  as for every HTTP engine
=========================  ============  ==================================================
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from email.utils import formataddr, getaddresses
from urllib.parse import quote

import httpx

from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind
from mailgate.domain.servers import Engine
from mailgate.engines.base import Clock
from mailgate.engines.config import Secret, ServerConfig
from mailgate.engines.http.base import (
    HttpExchange,
    Sent,
    api_base,
    build_client,
    failure_result,
    log_result,
    retry_after_of,
    status_result,
)
from mailgate.engines.http.probe import HttpProbe
from mailgate.engines.oauth.tokens import (
    OAuthTokenSource,
    TokenRefused,
    TokenUnavailable,
    token_source_for,
)
from mailgate.engines.probe_report import ProbeErrorCode, ProbeReport, StepName
from mailgate.engines.redaction import Redactor
from mailgate.errors import ConfigurationError
from mailgate.net.dialer import Dialer

__all__ = ["GRAPH_API", "WARN_MAILBOX_UNCHECKED", "GraphEngine", "graph_error_text", "graph_mime"]

GRAPH_API = "https://graph.microsoft.com"
WARN_MAILBOX_UNCHECKED = (
    "The app may send mail (Mail.Send) but may not read users, so the mailbox "
    "{upn} itself was not checked."
)


class GraphEngine:
    """Delivers through Microsoft Graph as ``sender_upn``; never raises for an outcome.

    Raises :class:`ConfigurationError` at construction without ``sender_upn`` or usable
    OAuth settings. ``client`` and ``tokens`` (tests) replace what would be built from
    ``dialer``; injected objects are not closed by :meth:`aclose`.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        dialer: Dialer,
        client: httpx.AsyncClient | None = None,
        tokens: OAuthTokenSource | None = None,
    ) -> None:
        if config.engine is not Engine.MSGRAPH:
            raise ConfigurationError(f"server {config.key} uses engine {config.engine}")
        if not config.sender_upn:
            raise ConfigurationError(f"server {config.key}: the msgraph engine needs sender_upn")
        if config.oauth is None or config.oauth.provider not in ("microsoft", ""):
            raise ConfigurationError(
                f"server {config.key}: the msgraph engine needs Microsoft OAuth settings"
            )
        self.config = config
        self.base_url = api_base(config, GRAPH_API)
        self.send_url = f"{self.base_url}/v1.0/users/{quote(config.sender_upn, safe='@')}/sendMail"
        oauth = config.oauth
        self._secrets = [s.reveal() for s in (oauth.client_secret, oauth.password) if s is not None]
        self._owns_tokens = tokens is None
        self.tokens = tokens or token_source_for(config, dialer=dialer)
        self._owns_client = client is None
        self._client = client or build_client(config, dialer=dialer)
        self._exchange = HttpExchange(self._client)

    def __repr__(self) -> str:
        return f"GraphEngine(key={self.config.key!r}, base_url={self.base_url!r})"

    async def deliver(self, envelope: Envelope, data: bytes, /) -> DeliveryResult:
        """Send ``data`` once as the configured mailbox (table in the module docstring).

        Graph sends to the recipients named in the MIME headers, so :func:`graph_mime`
        first makes those headers name exactly the envelope's recipients.
        """
        started = time.perf_counter()
        if not envelope.rcpt_to:
            raise ValueError("an envelope needs at least one recipient")
        content = base64.b64encode(graph_mime(envelope, data))
        transcript: list[str] = []
        for attempt in (1, 2):
            try:
                token = await self.tokens.access_token()
            except TokenRefused as exc:
                return self._token_failed(envelope, OutcomeKind.AUTH_FAILED, exc, started)
            except TokenUnavailable as exc:
                return self._token_failed(envelope, OutcomeKind.DEFERRED, exc, started)
            sent = await self._post(content, token)
            transcript += sent.transcript
            if sent.response is None:
                sent.transcript = transcript
                return log_result(
                    "msgraph", self.config, failure_result(envelope, sent, started=started)
                )
            if sent.response.status_code == 401 and attempt == 1:
                # The token may have been revoked or have expired early: fetch one more.
                self.tokens.invalidate(token)
                transcript.append("* 401: the access token was refused; fetching a new one")
                continue
            result = self._result(envelope, sent, transcript, started, token=token)
            return log_result("msgraph", self.config, result)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, content: bytes, token: Secret) -> Sent:
        return await self._exchange.send(
            "POST",
            self.send_url,
            content=content,
            headers={"Authorization": f"Bearer {token.reveal()}", "Content-Type": "text/plain"},
        )

    def _result(
        self,
        envelope: Envelope,
        sent: Sent,
        transcript: list[str],
        started: float,
        *,
        token: Secret,
    ) -> DeliveryResult:
        response = sent.response
        assert response is not None
        status = response.status_code
        retry_after = retry_after_of(response) if status == 429 or status >= 500 else None
        if status == 202:
            reply = "202 accepted by Microsoft Graph"
        else:
            # Error texts are stored and shown: never with the token or the app's secrets.
            reply = Redactor([*self._secrets, token.reveal()])(graph_error_text(response))
        result = status_result(
            envelope,
            sent,
            reply=reply,
            started=started,
            retry_after=retry_after,
            transcript=transcript,
        )
        request_id = response.headers.get("request-id")
        if request_id:
            result.details["request_id"] = request_id
        return result

    def _token_failed(
        self,
        envelope: Envelope,
        kind: OutcomeKind,
        exc: TokenRefused | TokenUnavailable,
        started: float,
    ) -> DeliveryResult:
        retry_after = exc.retry_after if isinstance(exc, TokenUnavailable) else None
        return log_result(
            "msgraph",
            self.config,
            DeliveryResult.whole(
                envelope,
                kind,
                code=exc.status if isinstance(exc, TokenRefused) else None,
                reply=str(exc),
                retry_after=retry_after,
                transcript=f"> POST {self.tokens.endpoint}\n* {exc}",
                connection_error=kind is OutcomeKind.DEFERRED,
                duration_ms=(time.perf_counter() - started) * 1000,
                details={"phase": "token"},
            ),
        )

    async def probe(self, *, clock: Clock = time.perf_counter) -> ProbeReport:
        """Check the app without sending: a token (step ``token``), then the mailbox.

        ``GET /v1.0/users/{sender_upn}`` (step ``api``) needs ``User.Read.All``, which a
        least-privilege app (``Mail.Send`` only) lacks: on 403 the access token (a JWT,
        read, not verified) is accepted when its ``roles`` (application permissions) or
        ``scp`` (delegated) include ``Mail.Send``, with a warning that the mailbox itself
        was not checked. 404 means no such mailbox (``invalid_configuration``).
        """
        run = HttpProbe(self.config, base=self.base_url, clock=clock)
        return await run.run(self._client, self._check_mailbox)

    async def _check_mailbox(self, probe: HttpProbe, client: httpx.AsyncClient) -> None:
        upn_text = self.config.sender_upn or ""
        token = await probe.step(StepName.TOKEN, self.tokens.access_token)
        probe.redact.add([token.reveal()])
        upn = quote(upn_text, safe="@")
        url = f"{self.base_url}/v1.0/users/{upn}?$select=id,userPrincipalName"
        headers = {"Authorization": f"Bearer {token.reveal()}"}
        response = await probe.step(StepName.API, lambda: client.get(url, headers=headers))
        status = response.status_code
        if status == 200:
            return
        if status == 404:
            raise probe.fail(
                ProbeErrorCode.INVALID_CONFIGURATION,
                f"No mailbox {upn_text} in this tenant (sender_upn).",
            )
        if status == 403:
            permissions = _token_permissions(token.reveal())
            if "Mail.Send" in permissions:
                probe.warnings.append(WARN_MAILBOX_UNCHECKED.format(upn=upn_text))
                return
            raise probe.fail(
                ProbeErrorCode.PERMISSION_MISSING,
                "The access token does not grant Mail.Send "
                f"(granted: {', '.join(sorted(permissions)) or 'nothing readable'}).",
            )
        probe.refused(status, graph_error_text(response), "The app's credentials")

    async def aclose(self) -> None:
        """Close the connections this engine (and its own token source) opened."""
        if self._owns_client:
            await self._client.aclose()
        if self._owns_tokens:
            await self.tokens.aclose()


def graph_error_text(response: httpx.Response) -> str:
    """``error.code: error.message`` of a Graph error body, else the status line."""
    status = f"{response.status_code} {response.reason_phrase}".strip()
    try:
        body = response.json()
    except ValueError:
        return status
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return status
    code, message = error.get("code"), error.get("message")
    parts = [p for p in (code, message) if isinstance(p, str) and p]
    return f"{status}: {': '.join(parts)}"[:1000] if parts else status


_FIELD_START = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)
_RECIPIENT_FIELDS = (b"to", b"cc", b"bcc")


def graph_mime(envelope: Envelope, data: bytes) -> bytes:
    """``data`` with To/Cc/Bcc headers that name exactly ``envelope``'s recipients.

    Graph delivers to the addresses in the MIME headers (it has no envelope), while in
    Mailgate the envelope decides (a retry may concern some recipients only). When the
    headers already match, ``data`` is returned unchanged. Otherwise To and Cc keep only
    envelope recipients (with their display names), and every envelope recipient they do
    not name is added as Bcc, which Graph delivers to and removes from the sent copy.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, body = data, b""
    fields = _split_fields(head)
    wanted = {r.lower(): r for r in envelope.rcpt_to}
    shown: dict[bytes, list[tuple[str, str]]] = {b"to": [], b"cc": []}
    named: set[str] = set()
    for name, raw in fields:
        if name in shown:
            value = raw.split(b":", 1)[1].decode("utf-8", "replace")
            for display, address in getaddresses([" ".join(value.split())]):
                if address:
                    shown[name].append((display, address))
                    named.add(address.lower())
    has_bcc = any(name == b"bcc" for name, _ in fields)
    if named == set(wanted) and not has_bcc:
        return data
    kept = [raw for name, raw in fields if name not in _RECIPIENT_FIELDS]
    for name, label in ((b"to", "To"), (b"cc", "Cc")):
        pairs = [pair for pair in shown[name] if pair[1].lower() in wanted]
        if pairs:
            kept.append(_address_field(label, pairs))
    hidden = [("", wanted[key]) for key in wanted if key not in named]
    if hidden:
        kept.append(_address_field("Bcc", hidden))
    return b"".join(kept) + b"\r\n" + body


def _split_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """Header fields as (lower-case name, raw bytes with folding and final CRLF)."""
    starts = [m.start() for m in _FIELD_START.finditer(head)]
    fields = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(head)
        raw = head[start:end]
        if not raw.endswith(b"\r\n"):
            raw += b"\r\n"
        fields.append((raw.split(b":", 1)[0].strip().lower(), raw))
    return fields


def _address_field(label: str, pairs: list[tuple[str, str]]) -> bytes:
    # One address per folded line keeps every line far below RFC 5322's 998 octets.
    text = ",\r\n ".join(formataddr(pair) for pair in pairs)
    return f"{label}: {text}\r\n".encode()


def _token_permissions(token: str) -> set[str]:
    """``roles`` and ``scp`` of a Microsoft access token (read, not verified)."""
    parts = token.split(".")
    if len(parts) != 3:
        return set()
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return set()
    if not isinstance(claims, dict):
        return set()
    found: set[str] = set()
    roles = claims.get("roles")
    if isinstance(roles, list):
        found.update(r for r in roles if isinstance(r, str))
    scp = claims.get("scp")
    if isinstance(scp, str):
        found.update(scp.split())
    return found
