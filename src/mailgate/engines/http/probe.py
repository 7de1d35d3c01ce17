"""Test connection for the HTTP engines: check the credentials against the API, send nothing.

* **SendGrid**: ``GET /v3/scopes`` with the API key (docs.sendgrid.com, "API Keys
  Permissions"); the key must carry ``mail.send``, otherwise ``permission_missing``.
* **Microsoft Graph**: obtain a token from the identity platform (step ``token``), then
  ``GET /v1.0/users/{sender_upn}`` (step ``api``). Reading a user needs ``User.Read.All``,
  which a least-privilege app (``Mail.Send`` only) lacks: on 403 the probe decodes the
  access token (a JWT; its signature is not checked, it is only read) and accepts it when
  its ``roles`` (application permissions) or ``scp`` (delegated) include ``Mail.Send``,
  with a warning that the mailbox itself was not checked. 404 means no such mailbox.

The report keeps the SMTP probe's shape: ``security`` is ``HTTPS`` (``insecure`` for a plain
HTTP loopback test server), ``tls`` describes the API connection, ``server`` is null. Every
connection goes through the given dialer (network policy). Errors never quote a secret.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

import anyio
import httpcore
import httpx

from mailgate.domain.servers import Engine
from mailgate.engines.config import ServerConfig
from mailgate.engines.http.base import api_base
from mailgate.engines.http.msgraph import GRAPH_API, graph_error_text
from mailgate.engines.http.sendgrid import SENDGRID_API, sendgrid_error_text
from mailgate.engines.oauth.tokens import TokenRefused, TokenUnavailable, token_source_for
from mailgate.engines.probe_errors import classify, make_error
from mailgate.engines.probe_report import (
    ProbeError,
    ProbeErrorCode,
    ProbeReport,
    ProbeSecurity,
    ProbeStep,
    StepName,
    TlsInfo,
    certificate_info,
)
from mailgate.errors import ConfigurationError, PolicyViolation
from mailgate.net.dialer import Dialer
from mailgate.net.http_transport import guarded_client
from mailgate.net.tls import client_context

__all__ = ["WARN_MAILBOX_UNCHECKED", "probe_http"]

Clock = Callable[[], float]
_T = TypeVar("_T")

WARN_MAILBOX_UNCHECKED = (
    "The app may send mail (Mail.Send) but may not read users, so the mailbox "
    "{upn} itself was not checked."
)
#: Exceptions that only wrap the cause worth reporting (httpx, httpcore, anyio layers).
_WRAPPERS = (
    httpx.HTTPError,
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)
_DEFAULTS = {Engine.SENDGRID: SENDGRID_API, Engine.MSGRAPH: GRAPH_API}


class _Abort(Exception):
    def __init__(self, error: ProbeError) -> None:
        super().__init__(error.message)
        self.error = error


async def probe_http(config: ServerConfig, *, dialer: Dialer, clock: Clock) -> ProbeReport:
    """Probe a ``sendgrid`` or ``msgraph`` server; never raises for a failure (see module)."""
    try:
        base = api_base(config, _DEFAULTS[config.engine])
    except ConfigurationError as exc:
        error = make_error(ProbeErrorCode.INVALID_CONFIGURATION, str(exc), config)
        return ProbeReport(security=ProbeSecurity.HTTPS, steps=(), error=error)
    url = httpx.URL(base)
    # Hints name the API's host and port, not the (unused) SMTP fields.
    shown = dataclasses.replace(config, host=url.host, port=url.port or 443)
    run = _HttpProbe(shown, base=base, dialer=dialer, clock=clock)
    return await run.run()


class _HttpProbe:
    def __init__(self, config: ServerConfig, *, base: str, dialer: Dialer, clock: Clock) -> None:
        self.config = config
        self.base = base
        self.dialer = dialer
        self.clock = clock
        self.steps: list[ProbeStep] = []
        self.warnings: list[str] = []
        self.tls: TlsInfo | None = None
        self.secrets = [s.reveal() for s in (config.api_key,) if s]

    async def run(self) -> ProbeReport:
        secure = httpx.URL(self.base).scheme == "https"
        security = ProbeSecurity.HTTPS if secure else ProbeSecurity.INSECURE
        error: ProbeError | None = None
        client = guarded_client(
            self.dialer,
            ssl_context=client_context(self.config),
            timeout=self.config.timeout_seconds,
        )
        try:
            if self.config.engine is Engine.SENDGRID:
                await self._sendgrid(client)
            else:
                await self._graph(client)
        except _Abort as abort:
            error = abort.error
        finally:
            await client.aclose()
        if not self.config.verify_certificate and secure:
            self.warnings.append("Certificate verification is off for this server's API.")
        return ProbeReport(
            security=security,
            steps=tuple(self.steps),
            tls=self.tls,
            authenticated=error is None,
            error=error,
            warnings=tuple(dict.fromkeys(self.warnings)),
        )

    # -- SendGrid --------------------------------------------------------------------------

    async def _sendgrid(self, client: httpx.AsyncClient) -> None:
        if not self.config.api_key:
            raise self._fail(ProbeErrorCode.INVALID_CONFIGURATION, "api_key is required")
        headers = {"Authorization": f"Bearer {self.config.api_key.reveal()}"}
        response = await self._step(
            StepName.API, lambda: client.get(f"{self.base}/v3/scopes", headers=headers)
        )
        status = response.status_code
        if status == 200:
            scopes = _json(response).get("scopes")
            if isinstance(scopes, list) and "mail.send" in scopes:
                return
            raise self._fail(
                ProbeErrorCode.PERMISSION_MISSING, "The API key lacks the mail.send permission."
            )
        self._refused(status, sendgrid_error_text(response), "The API key")

    # -- Microsoft Graph -------------------------------------------------------------------

    async def _graph(self, client: httpx.AsyncClient) -> None:
        config = self.config
        if not config.sender_upn:
            raise self._fail(ProbeErrorCode.INVALID_CONFIGURATION, "sender_upn is required")
        try:
            source = token_source_for(config, dialer=self.dialer, client=client)
        except ConfigurationError as exc:
            raise self._fail(ProbeErrorCode.INVALID_CONFIGURATION, str(exc)) from exc
        token = await self._step(StepName.TOKEN, source.access_token)
        upn = quote(config.sender_upn, safe="@")
        url = f"{self.base}/v1.0/users/{upn}?$select=id,userPrincipalName"
        headers = {"Authorization": f"Bearer {token.reveal()}"}
        response = await self._step(StepName.API, lambda: client.get(url, headers=headers))
        status = response.status_code
        if status == 200:
            return
        if status == 404:
            raise self._fail(
                ProbeErrorCode.INVALID_CONFIGURATION,
                f"No mailbox {config.sender_upn} in this tenant (sender_upn).",
            )
        if status == 403:
            permissions = _token_permissions(token.reveal())
            if "Mail.Send" in permissions:
                self.warnings.append(WARN_MAILBOX_UNCHECKED.format(upn=config.sender_upn))
                return
            raise self._fail(
                ProbeErrorCode.PERMISSION_MISSING,
                "The access token does not grant Mail.Send "
                f"(granted: {', '.join(sorted(permissions)) or 'nothing readable'}).",
            )
        self._refused(status, graph_error_text(response), "The app's credentials")

    # -- helpers ---------------------------------------------------------------------------

    def _refused(self, status: int, text: str, what: str) -> None:
        if status == 401:
            raise self._fail(ProbeErrorCode.AUTH_FAILED, f"{what} were refused: {text}")
        if status == 403:
            raise self._fail(ProbeErrorCode.PERMISSION_MISSING, f"Not allowed: {text}")
        if status == 429 or status >= 500:
            raise self._fail(ProbeErrorCode.AUTH_TEMPORARY_FAILURE, f"The API said: {text}")
        raise self._fail(ProbeErrorCode.SERVER_REJECTED, f"Unexpected answer: {text}")

    async def _step(self, name: StepName, action: Callable[[], Awaitable[_T]]) -> _T:
        started = self.clock()
        ok = False
        try:
            result = await action()
            ok = True
        except TokenRefused as exc:
            raise self._fail(ProbeErrorCode.AUTH_FAILED, str(exc)) from exc
        except TokenUnavailable as exc:
            code = ProbeErrorCode.DESTINATION_REFUSED if exc.policy else None
            raise self._fail(code or ProbeErrorCode.OAUTH_TOKEN_FAILED, str(exc)) from exc
        except (PolicyViolation, httpx.TransportError) as exc:
            raise _Abort(self._classify(exc, name)) from exc
        finally:
            elapsed = max(self.clock() - started, 0.0)
            self.steps.append(ProbeStep(name, ok, round(elapsed * 1000, 1)))
        if isinstance(result, httpx.Response):
            self._note_tls(result)
        return result

    def _classify(self, exc: BaseException, step: StepName) -> ProbeError:
        """The probe error of a failed request: its root cause, classified like SMTP's."""
        root: BaseException = exc
        while isinstance(root, _WRAPPERS):
            cause = root.__cause__ or root.__context__
            if cause is None:
                break
            root = cause
        if isinstance(root, _WRAPPERS):
            timed_out = isinstance(root, httpx.TimeoutException | httpcore.TimeoutException)
            root = TimeoutError() if timed_out else ConnectionError(str(root))
        try:
            error = classify(root, step, self.config)
        except Exception:  # not a network failure: report it plainly
            error = make_error(ProbeErrorCode.CONNECTION_FAILED, type(root).__name__, self.config)
        return dataclasses.replace(error, message=self._redact(error.message))

    def _fail(self, code: ProbeErrorCode, message: str) -> _Abort:
        return _Abort(make_error(code, self._redact(message), self.config))

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "**********")
        return text

    def _note_tls(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        if isinstance(ssl_object, ssl.SSLObject):
            cipher = ssl_object.cipher()
            self.tls = TlsInfo(
                version=ssl_object.version() or "",
                cipher=cipher[0] if cipher else "",
                certificate=certificate_info(ssl_object, verified=self.config.verify_certificate),
            )


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


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
