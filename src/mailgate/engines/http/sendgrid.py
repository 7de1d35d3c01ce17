"""The SendGrid engine: v3 Mail Send (``POST /v3/mail/send``) with an API key.

The composed RFC 5322 message is parsed with the stdlib ``email`` package and turned into
SendGrid's JSON by :func:`payload` (mapping in its docstring). Statuses
(docs.sendgrid.com, "Mail Send" errors and "Rate limits"):

=======================  ============  =====================================================
status                   outcome       notes
=======================  ============  =====================================================
202                      SENT          ``X-Message-Id`` becomes ``remote_id``
400, 413                 FAILED        reply: the API's ``errors[].message``
401, 403                 AUTH_FAILED   the server is held until its API key is fixed
429                      DEFERRED      retry after ``X-RateLimit-Reset`` (epoch seconds) or
                                       ``Retry-After``
5xx                      DEFERRED      connection_error (a fallback server is worth trying)
no response              DEFERRED      refused, TLS, connect timeout: connection_error
timeout after sending    UNKNOWN       the next attempt is flagged possible_duplicate
=======================  ============  =====================================================
"""

from __future__ import annotations

import base64
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import httpx

from mailgate.compose.headers import CATEGORIES_HEADER
from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind
from mailgate.domain.outcomes import parse_reset_epoch
from mailgate.domain.server_schema import OPTIONS, SENDGRID_SEND_PATH
from mailgate.domain.servers import Engine
from mailgate.engines.base import Clock
from mailgate.engines.config import ServerConfig
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
from mailgate.engines.http.probe import HttpProbe, response_json
from mailgate.engines.probe_report import ProbeErrorCode, ProbeReport, StepName
from mailgate.engines.redaction import Redactor
from mailgate.errors import ConfigurationError
from mailgate.net.dialer import Dialer

__all__ = ["CATEGORIES_HEADER", "SENDGRID_API", "SendGridEngine", "payload", "sendgrid_error_text"]

SENDGRID_API = "https://api.sendgrid.com"


class SendGridEngine:
    """Delivers through SendGrid's v3 API; :meth:`deliver` never raises for an outcome.

    Raises :class:`ConfigurationError` at construction without an API key or with an
    unusable ``api_base_url``. ``client`` (tests) replaces the client that dials through
    ``dialer``; an injected client is not closed by :meth:`aclose`.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        dialer: Dialer,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if config.engine is not Engine.SENDGRID:
            raise ConfigurationError(f"server {config.key} uses engine {config.engine}")
        if not config.api_key:
            raise ConfigurationError(f"server {config.key}: the sendgrid engine needs an api_key")
        self.config = config
        self.base_url = api_base(config, SENDGRID_API)
        self.send_path = send_path_of(config)
        # The API's error texts are stored and shown: never with the key in them.
        self._redact = Redactor([config.api_key.reveal()])
        self._owns_client = client is None
        self._client = client or build_client(config, dialer=dialer)
        self._exchange = HttpExchange(self._client)

    def __repr__(self) -> str:
        return f"SendGridEngine(key={self.config.key!r}, base_url={self.base_url!r})"

    async def deliver(self, envelope: Envelope, data: bytes, /) -> DeliveryResult:
        """POST ``data`` (parsed and mapped to JSON) for ``envelope``'s recipients once."""
        started = time.perf_counter()
        if not envelope.rcpt_to:
            raise ValueError("an envelope needs at least one recipient")
        if len(envelope.rcpt_to) > MAX_RECIPIENTS:
            return DeliveryResult.whole(
                envelope,
                OutcomeKind.FAILED,
                reply=f"SendGrid accepts at most {MAX_RECIPIENTS} recipients per message",
                details={"phase": "request"},
            )
        try:
            body = payload(envelope, data)
        except ValueError as exc:
            return DeliveryResult.whole(
                envelope, OutcomeKind.FAILED, reply=str(exc), details={"phase": "request"}
            )
        assert self.config.api_key is not None
        sent = await self._exchange.send(
            "POST",
            f"{self.base_url}{self.send_path}",
            json=body,
            headers={"Authorization": f"Bearer {self.config.api_key.reveal()}"},
        )
        if sent.response is None:
            result = failure_result(envelope, sent, started=started)
        else:
            result = self._result(envelope, sent.response, sent, started)
        log_result("sendgrid", self.config, result)
        return result

    def _result(
        self, envelope: Envelope, response: httpx.Response, sent: Sent, started: float
    ) -> DeliveryResult:
        status = response.status_code
        retry_after = None
        if status == 429:
            # docs.sendgrid.com "Rate limits": X-RateLimit-Reset is the epoch second at which
            # the limit resets; Retry-After is honoured too when present.
            retry_after = parse_reset_epoch(
                response.headers.get("x-ratelimit-reset"), now=time.time()
            )
            if retry_after is None:
                retry_after = retry_after_of(response)
        elif status >= 500:
            retry_after = retry_after_of(response)
        if 200 <= status < 300:
            reply = f"{status} accepted by SendGrid"
        else:
            reply = self._redact(sendgrid_error_text(response))
        return status_result(
            envelope,
            sent,
            reply=reply,
            started=started,
            retry_after=retry_after,
            remote_id=response.headers.get("x-message-id") or None,
        )

    async def probe(self, *, clock: Clock = time.perf_counter) -> ProbeReport:
        """Check the API key without sending: ``GET /v3/scopes`` must list ``mail.send``.

        docs.sendgrid.com, "API Keys Permissions"; without ``mail.send`` the report says
        ``permission_missing``. The scopes are read next to the send path (``/v3/scopes``
        under the same prefix: ``/relay/v3/mail/send`` reads ``/relay/v3/scopes``). With a
        ``send_path`` option, the path delivery uses is checked too: an empty JSON body is
        posted to it, which SendGrid refuses with 400 after accepting the key, so nothing is
        sent; 404 or 405 there means the path is wrong.
        """
        assert self.config.api_key is not None
        run = HttpProbe(
            self.config, base=self.base_url, clock=clock, secrets=[self.config.api_key.reveal()]
        )
        return await run.run(self._client, self._check_scopes)

    async def _check_scopes(self, probe: HttpProbe, client: httpx.AsyncClient) -> None:
        assert self.config.api_key is not None
        headers = {"Authorization": f"Bearer {self.config.api_key.reveal()}"}
        # A send path of another shape says nothing about the scopes: read them at the root.
        ends = self.send_path.endswith(SENDGRID_SEND_PATH)
        prefix = self.send_path.removesuffix(SENDGRID_SEND_PATH) if ends else ""
        url = f"{self.base_url}{prefix}/v3/scopes"
        response = await probe.step(StepName.API, lambda: client.get(url, headers=headers))
        status = response.status_code
        if status != 200:
            probe.refused(status, sendgrid_error_text(response), "The API key")
        scopes = response_json(response).get("scopes")
        if not isinstance(scopes, list) or "mail.send" not in scopes:
            raise probe.fail(
                ProbeErrorCode.PERMISSION_MISSING, "The API key lacks the mail.send permission."
            )
        if self.send_path == SENDGRID_SEND_PATH:
            return
        send_url = f"{self.base_url}{self.send_path}"
        response = await probe.step(
            StepName.API, lambda: client.post(send_url, json={}, headers=headers)
        )
        status = response.status_code
        if status == 400 or 200 <= status < 300:
            return
        if status in (404, 405):
            raise probe.fail(
                ProbeErrorCode.INVALID_CONFIGURATION,
                f"POST {self.send_path} answered {status} {response.reason_phrase}: "
                "check the send_path option.",
            )
        probe.refused(status, sendgrid_error_text(response), "The API key")

    async def aclose(self) -> None:
        """Close the connections this engine opened."""
        if self._owns_client:
            await self._client.aclose()


def send_path_of(config: ServerConfig) -> str:
    """The Mail Send path of ``config``: its ``send_path`` option, else ``/v3/mail/send``.

    Raises ConfigurationError for a path the server schema would refuse (a server saved
    before the option was checked)."""
    path = (config.options.get("send_path") or "").strip()
    if not path:
        return SENDGRID_SEND_PATH
    problem = OPTIONS["send_path"].check(path)
    if problem is not None:
        raise ConfigurationError(f"server {config.key}: options.send_path {problem}")
    return path


def sendgrid_error_text(response: httpx.Response) -> str:
    """``errors[].message`` of a SendGrid error body (joined), else the status line."""
    status = f"{response.status_code} {response.reason_phrase}".strip()
    try:
        body = response.json()
    except ValueError:
        return status
    errors = body.get("errors") if isinstance(body, dict) else None
    messages: list[str] = []
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("message"), str):
                field = item.get("field")
                text = item["message"]
                messages.append(f"{field}: {text}" if isinstance(field, str) and field else text)
    if not messages:
        return status
    return f"{status}: " + "; ".join(messages)[:1000]


# -- the JSON body -------------------------------------------------------------------------

#: SendGrid: at most 1000 recipients (to + cc + bcc, all personalizations) per request.
MAX_RECIPIENTS = 1000
#: Categories for SendGrid's statistics (comma-separated, :data:`CATEGORIES_HEADER` from
#: compose, the one X-Mailgate- field senders may set); the header itself is not sent.
_MAX_CATEGORIES = 10  # SendGrid: up to 10 categories of at most 255 characters
#: Headers SendGrid refuses in ``headers`` (v3 Mail Send reference) or sets itself from the
#: other fields; everything else (Message-ID, X-Mailgate-*, List-Unsubscribe...) is kept.
_NOT_COPIED = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "mime-version",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
        "date",
        CATEGORIES_HEADER.lower(),
    }
)


def payload(envelope: Envelope, data: bytes) -> dict[str, Any]:
    """The v3 Mail Send body for ``data`` delivered to ``envelope``'s recipients.

    * ``personalizations``: the envelope decides who receives the message (it may be a
      test list). Envelope recipients named in the To and Cc headers share one
      personalization as ``to``/``cc``; every other recipient (Bcc, or a test-list address)
      gets a personalization of its own, so no recipient sees another's address.
    * ``from``, ``reply_to`` (``reply_to_list`` for several), ``subject`` from the headers.
    * ``content``: the text/plain body, then the text/html body.
    * ``attachments``: every other leaf part, base64, with filename and type; parts with a
      Content-ID that are not ``attachment`` are ``inline`` with their ``content_id``.
    * ``headers``: every other header (Message-ID, X-Mailgate-*, ...), unfolded.
    * ``categories``: the comma-separated values of ``X-Mailgate-Categories``, if present.

    Raises ``ValueError`` when the message has no From address.
    """
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    sender = _addresses(message, "From")
    if not sender:
        raise ValueError("the message has no From address")
    body: dict[str, Any] = {
        "personalizations": _personalizations(envelope, message),
        "from": sender[0],
        "subject": str(message.get("Subject", "")),
    }
    reply_to = _addresses(message, "Reply-To")
    if len(reply_to) == 1:
        body["reply_to"] = reply_to[0]
    elif reply_to:
        body["reply_to_list"] = reply_to
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    content = [
        # Wire CRLFs become plain newlines: SendGrid writes the lines out itself.
        {"type": f"text/{kind}", "value": part.get_content().replace("\r\n", "\n")}
        for kind, part in (("plain", plain), ("html", html))
        if part is not None
    ]
    if content:
        body["content"] = content
    attachments = [
        _attachment(part)
        for part in message.walk()
        if not part.is_multipart() and part is not plain and part is not html
    ]
    if attachments:
        body["attachments"] = attachments
    headers = {
        name: " ".join(str(value).split())
        for name, value in message.items()
        if name.lower() not in _NOT_COPIED
    }
    if headers:
        body["headers"] = headers
    categories = _categories(message)
    if categories:
        body["categories"] = categories
    return body


def _addresses(message: EmailMessage, name: str) -> list[dict[str, str]]:
    header = message.get(name)
    found: list[dict[str, str]] = []
    for address in getattr(header, "addresses", ()):
        if address.addr_spec and address.addr_spec != "<>":
            entry = {"email": address.addr_spec}
            if address.display_name:
                entry["name"] = address.display_name
            found.append(entry)
    return found


def _personalizations(envelope: Envelope, message: EmailMessage) -> list[dict[str, Any]]:
    listed = {
        field: {a["email"].lower() for a in _addresses(message, field)} for field in ("To", "Cc")
    }
    shared: dict[str, list[dict[str, str]]] = {"to": [], "cc": []}
    alone: list[dict[str, Any]] = []
    seen: set[str] = set()
    for recipient in envelope.rcpt_to:
        key = recipient.lower()
        if key in seen:  # SendGrid refuses duplicates within a request
            continue
        seen.add(key)
        if key in listed["To"]:
            shared["to"].append({"email": recipient})
        elif key in listed["Cc"]:
            shared["cc"].append({"email": recipient})
        else:
            alone.append({"to": [{"email": recipient}]})
    if not shared["to"]:
        shared["to"], shared["cc"] = shared["cc"], []
    personalizations = [{k: v for k, v in shared.items() if v}] if shared["to"] else []
    return personalizations + alone


def _attachment(part: EmailMessage) -> dict[str, str]:
    content = part.get_payload(decode=True)
    raw = content if isinstance(content, bytes) else b""
    entry = {
        "content": base64.b64encode(raw).decode("ascii"),
        "filename": part.get_filename() or "attachment",
        "type": part.get_content_type(),
    }
    content_id = str(part.get("Content-ID", "")).strip().strip("<>")
    if content_id and part.get_content_disposition() != "attachment":
        entry["disposition"] = "inline"
        entry["content_id"] = content_id
    else:
        entry["disposition"] = "attachment"
    return entry


def _categories(message: EmailMessage) -> list[str]:
    values = [str(v) for v in message.get_all(CATEGORIES_HEADER) or []]
    names = [name.strip()[:255] for value in values for name in value.split(",")]
    return list(dict.fromkeys(n for n in names if n))[:_MAX_CATEGORIES]
