"""Test connection for the HTTP engines: check the credentials against the API, send nothing.

:class:`HttpProbe` is the part every HTTP engine shares: timed steps, classification of
network failures like the SMTP probe's, TLS details of the API connection and redaction of
the engine's secrets. Each engine owns its check (``SendGridEngine.probe``,
``GraphEngine.probe``) and runs it with :meth:`HttpProbe.run` over the engine's own
client, the one delivery uses.

The report keeps the SMTP probe's shape: ``security`` is ``HTTPS`` (``insecure`` for a plain
HTTP loopback test server), ``tls`` describes the API connection, ``server`` is null. Every
connection goes through the engine's dialer (network policy). Errors never quote a secret.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import anyio
import httpcore
import httpx

from mailgate.engines.config import ServerConfig
from mailgate.engines.oauth.tokens import TokenRefused, TokenUnavailable
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
from mailgate.engines.redaction import Redactor
from mailgate.errors import PolicyViolation

__all__ = ["Check", "HttpProbe", "ProbeAbort", "response_json"]

Clock = Callable[[], float]
_T = TypeVar("_T")

#: Exceptions that only wrap the cause worth reporting (httpx, httpcore, anyio layers).
_WRAPPERS = (
    httpx.HTTPError,
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


class ProbeAbort(Exception):
    """Ends an HTTP probe with ``error``; raised by :meth:`HttpProbe.fail` and the steps."""

    def __init__(self, error: ProbeError) -> None:
        super().__init__(error.message)
        self.error = error


#: An engine's check: requests through the client, :meth:`HttpProbe.step` around each,
#: :meth:`HttpProbe.fail` (raised) when the answer is not good enough.
Check = Callable[["HttpProbe", httpx.AsyncClient], Awaitable[None]]


class HttpProbe:
    """One HTTP probe run against the API at ``base`` (already checked by the engine)."""

    def __init__(
        self, config: ServerConfig, *, base: str, clock: Clock, secrets: Iterable[str] = ()
    ) -> None:
        url = httpx.URL(base)
        # Hints name the API's host and port, not the (unused) SMTP fields.
        self.config = dataclasses.replace(config, host=url.host, port=url.port or 443)
        self.base = base
        self.clock = clock
        self.steps: list[ProbeStep] = []
        self.warnings: list[str] = []
        self.tls: TlsInfo | None = None
        #: Secrets that no message of the report may show; checks may add more.
        self.redact = Redactor(s for s in secrets if s)

    async def run(self, client: httpx.AsyncClient, check: Check) -> ProbeReport:
        """Run ``check`` over ``client``; never raises for a failure (the report has it)."""
        secure = httpx.URL(self.base).scheme == "https"
        security = ProbeSecurity.HTTPS if secure else ProbeSecurity.INSECURE
        error: ProbeError | None = None
        try:
            await check(self, client)
        except ProbeAbort as abort:
            error = abort.error
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

    # -- helpers ---------------------------------------------------------------------------

    def refused(self, status: int, text: str, what: str) -> None:
        """Raise the error for a refusal of the API with ``status`` (and its ``text``)."""
        if status == 401:
            raise self.fail(ProbeErrorCode.AUTH_FAILED, f"{what} were refused: {text}")
        if status == 403:
            raise self.fail(ProbeErrorCode.PERMISSION_MISSING, f"Not allowed: {text}")
        if status == 429 or status >= 500:
            raise self.fail(ProbeErrorCode.AUTH_TEMPORARY_FAILURE, f"The API said: {text}")
        raise self.fail(ProbeErrorCode.SERVER_REJECTED, f"Unexpected answer: {text}")

    async def step(self, name: StepName, action: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``action`` as the report's step ``name``; failures end the probe."""
        started = self.clock()
        ok = False
        try:
            result = await action()
            ok = True
        except TokenRefused as exc:
            raise self.fail(ProbeErrorCode.AUTH_FAILED, str(exc)) from exc
        except TokenUnavailable as exc:
            code = ProbeErrorCode.DESTINATION_REFUSED if exc.policy else None
            raise self.fail(code or ProbeErrorCode.OAUTH_TOKEN_FAILED, str(exc)) from exc
        except (PolicyViolation, httpx.TransportError) as exc:
            raise ProbeAbort(self._classify(exc, name)) from exc
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
        return dataclasses.replace(error, message=self.redact(error.message))

    def fail(self, code: ProbeErrorCode, message: str) -> ProbeAbort:
        """The abort (to raise) with ``code`` and ``message`` (secrets redacted)."""
        return ProbeAbort(make_error(code, self.redact(message), self.config))

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


def response_json(response: httpx.Response) -> dict[str, object]:
    """The JSON object of ``response``, or an empty one when it has none."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
