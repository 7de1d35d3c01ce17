"""OAuth 2.0 access tokens for XOAUTH2 and Microsoft Graph, per server configuration.

:func:`token_source_for` builds an :class:`OAuthTokenSource` (the ``TokenSource`` of
:mod:`mailgate.engines.base`) from a server's :class:`~mailgate.engines.config.OAuthConfig`:

=========  ====================  ==================================================
provider   grant                 request (token endpoint)
=========  ====================  ==================================================
google     JWT bearer (RFC 7523)  ``assertion`` signed by the service account
microsoft  client_credentials    ``client_id`` + ``client_secret`` (RFC 6749 4.4)
microsoft  password              + ``username`` + ``password`` (RFC 6749 4.3, ROPC)
=========  ====================  ==================================================

Endpoints are fixed per provider (Google ``https://oauth2.googleapis.com/token``, Microsoft
``https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token``) unless
``oauth.token_url`` names another; every request goes through the injected dialer, so the
network policy applies. Tokens are cached until shortly before ``expires_in`` runs out;
:meth:`OAuthTokenSource.invalidate` drops a token the server rejected so that the next call
fetches a fresh one ("refresh once on rejection" is the caller's loop).

Errors: :class:`TokenRefused` (a :class:`~mailgate.errors.ConfigurationError`: the provider
refused the credentials, e.g. ``invalid_grant``/``invalid_client``; the SMTP engine maps it
to AUTH_FAILED) and :class:`TokenUnavailable` (an ``OSError``: unreachable, refused by the
network policy, 429 or 5xx). Neither message, nor any repr, contains a token, a client
secret, a password or an assertion.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from mailgate.domain.outcomes import parse_http_retry_after
from mailgate.domain.servers import Engine
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig
from mailgate.engines.oauth.jwt import ServiceAccount, jwt_bearer_assertion
from mailgate.engines.redaction import Redactor
from mailgate.errors import ConfigurationError, PolicyViolation
from mailgate.net.dialer import Dialer
from mailgate.net.http_transport import guarded_client
from mailgate.net.tls import client_context
from mailgate.net.urls import checked_url

__all__ = [
    "GOOGLE_TOKEN_URL",
    "GRAPH_SCOPE",
    "JWT_BEARER",
    "OAuthTokenSource",
    "TokenRefused",
    "TokenUnavailable",
    "token_source_for",
]

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - an endpoint
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
#: Exchange Online SMTP AUTH with an app-only token (learn.microsoft.com, "Authenticate an
#: IMAP, POP or SMTP connection using OAuth").
OUTLOOK_APP_SCOPE = "https://outlook.office365.com/.default"
OUTLOOK_DELEGATED_SCOPE = "https://outlook.office.com/SMTP.Send offline_access"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANTS = ("client_credentials", "password")

#: RFC 6749 section 5.2 error codes that mean "the settings are wrong", not "try later".
_REFUSALS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
    }
)
_DEFAULT_LIFETIME = 3600.0
_EARLY_REFRESH = 60.0

Clock = Callable[[], float]


class TokenRefused(ConfigurationError):
    """The token endpoint refused the credentials; ``error`` is the RFC 6749 code, if any."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None):
        super().__init__(message)
        self.error = error
        self.status = status


class TokenUnavailable(OSError):
    """No token now: the endpoint is unreachable, refused by policy, rate limited or failing.

    ``retry_after`` (seconds) is set when the endpoint said when to come back; ``policy``
    when the network policy refused the destination (no connection was attempted).
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, policy: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.policy = policy

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class _Cached:
    token: Secret
    refresh_at: float  # clock() value after which a new token is fetched


FormBuilder = Callable[[], dict[str, str]]


class OAuthTokenSource:
    """Fetches and caches access tokens from one token endpoint (one server's settings).

    Safe for concurrent use on one event loop: concurrent callers share one request.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        form: FormBuilder,
        client: httpx.AsyncClient,
        secrets: tuple[str, ...] = (),
        clock: Clock = time.monotonic,
        owns_client: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self._form = form
        self._client = client
        self._owns_client = owns_client
        self._redact = Redactor(s for s in secrets if s)
        self._clock = clock
        self._cached: _Cached | None = None
        self._lock = asyncio.Lock()
        self.fetched = 0  # tokens obtained so far (for tests and metrics)

    def __repr__(self) -> str:
        return f"OAuthTokenSource(endpoint={self.endpoint!r})"

    async def access_token(self) -> Secret:
        """A valid access token, from the cache or fetched now (see module docstring)."""
        cached = self._cached
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.token
        async with self._lock:
            cached = self._cached
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.token
            self._cached = await self._fetch()
            self.fetched += 1
            return self._cached.token

    def invalidate(self, token: Secret | None = None) -> None:
        """Forget the cached token (only if it is ``token``, when given): it was rejected."""
        if self._cached is not None and (token is None or self._cached.token == token):
            self._cached = None

    async def aclose(self) -> None:
        """Close the HTTP connections this source opened."""
        if self._owns_client:
            await self._client.aclose()

    async def _fetch(self) -> _Cached:
        started = self._clock()
        try:
            response = await self._client.post(
                self.endpoint, data=self._form(), headers={"Accept": "application/json"}
            )
        except PolicyViolation as exc:
            raise TokenUnavailable(
                f"the token endpoint is refused by the network policy: {exc}", policy=True
            ) from None
        except httpx.TimeoutException:
            raise TokenUnavailable(f"the token endpoint {self.endpoint} timed out") from None
        except httpx.TransportError as exc:
            raise TokenUnavailable(
                f"could not reach the token endpoint {self.endpoint}: {self._redact(str(exc))}"
            ) from None
        return self._parse(response, started)

    def _parse(self, response: httpx.Response, started: float) -> _Cached:
        """RFC 6749 section 5.1 (success) and 5.2 (error) responses."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        data = body if isinstance(body, dict) else {}
        if status == 200:
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise TokenUnavailable(f"the token endpoint {self.endpoint} sent no access_token")
            lifetime = _number(data.get("expires_in")) or _DEFAULT_LIFETIME
            early = min(_EARLY_REFRESH, lifetime / 2)
            return _Cached(Secret(token), started + lifetime - early)
        error = data.get("error") if isinstance(data.get("error"), str) else None
        description = data.get("error_description")
        detail = error or f"HTTP {status}"
        if isinstance(description, str) and description:
            # Microsoft descriptions carry trace ids after the first line; keep the first.
            detail += f": {self._redact(description.splitlines()[0])[:300]}"
        if status == 429 or status >= 500 or status == 408:
            retry = parse_http_retry_after(response.headers.get("retry-after"), now=time.time())
            raise TokenUnavailable(
                f"the token endpoint {self.endpoint} failed ({detail})", retry_after=retry
            )
        if error in _REFUSALS or 400 <= status < 500:
            raise TokenRefused(
                f"the OAuth provider refused the credentials ({detail})", error=error, status=status
            )
        raise TokenUnavailable(f"unexpected answer from the token endpoint ({detail})")


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return float(value)
    if isinstance(value, str) and value.isdigit():
        return float(value)
    return None


def token_context(config: ServerConfig) -> ssl.SSLContext:
    """TLS for token endpoints: the server's CA certificates and minimum version, but always
    verified — ``verify_certificate: false`` relaxes the mail server only, never the
    endpoint that receives the client secret."""
    context = client_context(config)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def token_source_for(
    config: ServerConfig,
    *,
    dialer: Dialer,
    client: httpx.AsyncClient | None = None,
    clock: Clock = time.monotonic,
) -> OAuthTokenSource:
    """The token source of ``config`` (SMTP with ``auth: xoauth2``, or the msgraph engine).

    Raises :class:`ConfigurationError` naming the missing or wrong OAuth setting. Without
    ``client``, one is built that dials through ``dialer`` and is closed by ``aclose``.
    """
    oauth = config.oauth
    if oauth is None:
        raise ConfigurationError(f"server {config.key}: OAuth settings (oauth) are required")
    if oauth.provider == "google":
        endpoint, form, secrets = _google(config.key, oauth)
    elif oauth.provider == "microsoft":
        endpoint, form, secrets = _microsoft(config, oauth)
    else:
        raise ConfigurationError(f"server {config.key}: oauth.provider must be google or microsoft")
    endpoint = checked_url(config.key, endpoint, field="oauth.token_url")
    owns = client is None
    if client is None:
        client = guarded_client(
            dialer, ssl_context=token_context(config), timeout=config.timeout_seconds
        )
    return OAuthTokenSource(
        endpoint=endpoint, form=form, client=client, secrets=secrets, clock=clock, owns_client=owns
    )


def _google(key: str, oauth: OAuthConfig) -> tuple[str, FormBuilder, tuple[str, ...]]:
    if oauth.service_account_json is None:
        raise ConfigurationError(
            f"server {key}: Google XOAUTH2 needs oauth.service_account_json (a service account "
            "with domain-wide delegation)"
        )
    account = ServiceAccount.from_json(oauth.service_account_json.reveal())
    endpoint = oauth.token_url or GOOGLE_TOKEN_URL
    scope = oauth.scope or GOOGLE_MAIL_SCOPE

    def form() -> dict[str, str]:
        # A fresh assertion per request (RFC 7523 section 3: short-lived, with iat/exp).
        assertion = jwt_bearer_assertion(
            account, scope=scope, audience=endpoint, subject=oauth.subject, now=int(time.time())
        )
        return {"grant_type": JWT_BEARER, "assertion": assertion}

    return endpoint, form, ()


def _microsoft(
    config: ServerConfig, oauth: OAuthConfig
) -> tuple[str, FormBuilder, tuple[str, ...]]:
    key = config.key
    if oauth.grant not in GRANTS:
        raise ConfigurationError(f"server {key}: oauth.grant must be one of {', '.join(GRANTS)}")
    if not oauth.client_id:
        raise ConfigurationError(f"server {key}: oauth.client_id is required")
    if oauth.client_secret is None:
        raise ConfigurationError(f"server {key}: oauth.client_secret is required")
    if oauth.token_url:
        endpoint = oauth.token_url
    elif oauth.tenant_id:
        endpoint = f"{MICROSOFT_AUTHORITY}/{oauth.tenant_id}/oauth2/v2.0/token"
    else:
        raise ConfigurationError(f"server {key}: oauth.tenant_id (or oauth.token_url) is required")
    password_grant = oauth.grant == "password"
    if password_grant and not (oauth.username and oauth.password):
        raise ConfigurationError(
            f"server {key}: the password grant needs oauth.username and oauth.password"
        )
    if oauth.scope:
        scope = oauth.scope
    elif config.engine is Engine.MSGRAPH:
        scope = GRAPH_SCOPE
    else:
        scope = OUTLOOK_DELEGATED_SCOPE if password_grant else OUTLOOK_APP_SCOPE
    fields = {
        "grant_type": oauth.grant,
        "client_id": oauth.client_id,
        "client_secret": oauth.client_secret.reveal(),
        "scope": scope,
    }
    secrets = [oauth.client_secret.reveal()]
    if password_grant and oauth.password is not None:
        fields["username"] = oauth.username or ""
        fields["password"] = oauth.password.reveal()
        secrets.append(oauth.password.reveal())
    return endpoint, lambda: dict(fields), tuple(secrets)
