"""The one declaration of a mail server's fields (and an account's IMAP fields).

Every field's type, bounds, whether it is a write-only secret, whether it may be cleared,
and whether changing it requires the stored secret again ("secret-bound": it decides where
or how a secret travels) is declared here, once. The API's request models, the
configuration file's checks, the UI form's parsing and the servers service all take their
rules from these tables (tests/config/test_server_schema.py checks that they agree).

The ``options`` of a server are declared here too (:data:`OPTIONS`): known keys with their
value rules, so that a saved server can always be built into an engine.

Pure: no IO, standard library only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["text", "int", "float", "bool", "choice", "map", "list", "object"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: ``name`` is its path in the API (``oauth.token_url``)."""

    name: str
    kind: Kind
    default: Any = None
    #: ``None`` may be stored (and sent, to clear it); otherwise an explicit null is a 422.
    nullable: bool = True
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: The minimum is exclusive (``timeout_seconds`` > 0).
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    multiline: bool = False
    #: A write-only secret: never shown, an omitted or blank value keeps the stored one.
    secret: bool = False
    #: Changing it sends a stored secret somewhere new (or in a new way): the secret must
    #: be given again.
    secret_bound: bool = False
    #: The key of a secret in the sealed mapping (``oauth_client_secret``).
    sealed_as: str | None = None

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this field (``None`` when it is valid)."""
        if value is None:
            return None if self.nullable else "must not be null"
        if self.kind in ("text", "choice"):
            if not isinstance(value, str):
                return "must be a string"
            if self.kind == "choice" and value not in self.choices:
                return f"must be one of {', '.join(self.choices)}"
            if self.max_length is not None and len(value) > self.max_length:
                return f"must be at most {self.max_length} characters long"
            if has_controls(value, allow_line_breaks=self.multiline):
                return "must not contain control characters"
            return None
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "must be a number"
            if self.kind == "int" and not isinstance(value, int):
                return "must be a whole number"
            return self._bounds_problem(value)
        return None

    def _bounds_problem(self, value: float) -> str | None:
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value <= low if self.exclusive_minimum else value < low)
        if not too_low and (high is None or value <= high):
            return None
        if low is None:
            return f"must be at most {high:g}"
        if high is None:
            return f"must be {'more than' if self.exclusive_minimum else 'at least'} {low:g}"
        if self.exclusive_minimum:
            return f"must be more than {low:g} and at most {high:g}"
        return f"must be between {low:g} and {high:g}"


def has_controls(value: str, *, allow_line_breaks: bool = False) -> bool:
    """True when ``value`` holds a C0 control, DEL or a C1 control (TAB and line breaks only
    with ``allow_line_breaks``)."""
    for char in value:
        code = ord(char)
        if allow_line_breaks and char in "\r\n\t":
            continue
        if code < 32 or 0x7F <= code <= 0x9F:
            return True
    return False


# Mail server fields --------------------------------------------------------------------

_F = FieldSpec

SERVER_FIELDS: tuple[FieldSpec, ...] = (
    _F("name", "text", nullable=False, max_length=200),
    _F("engine", "choice", "smtp", nullable=False,
       choices=("smtp", "sendgrid", "msgraph", "capture")),
    _F("provider", "text", max_length=100),
    _F("host", "text", max_length=255, secret_bound=True),
    _F("port", "int", nullable=False, minimum=1, maximum=65535, secret_bound=True),
    _F("security", "choice", "starttls", nullable=False, secret_bound=True,
       choices=("starttls", "tls", "none")),
    _F("min_tls_version", "choice", "1.2", nullable=False, choices=("1.2", "1.3")),
    _F("verify_certificate", "bool", True, nullable=False, secret_bound=True),
    _F("ca_certificates", "text", max_length=200_000, multiline=True, secret_bound=True),
    _F("ca_keystore", "text", max_length=200, secret_bound=True),
    _F("auth", "choice", "none", nullable=False, choices=("none", "password", "xoauth2")),
    _F("username", "text", max_length=320, secret_bound=True),
    _F("password", "text", max_length=10_000, secret=True, sealed_as="password"),
    _F("allow_insecure_auth", "bool", False, nullable=False, secret_bound=True),
    _F("oauth", "object"),
    _F("api_key", "text", max_length=10_000, secret=True, sealed_as="api_key"),
    _F("api_base_url", "text", max_length=500, secret_bound=True),
    _F("sender_upn", "text", max_length=320),
    _F("timeout_seconds", "float", 30.0, nullable=False, minimum=0, maximum=600,
       exclusive_minimum=True),
    _F("max_connections", "int", 4, nullable=False, minimum=1, maximum=100),
    _F("rate_limit_per_minute", "int", minimum=1, maximum=10_000_000),
    _F("stages", "list"),
    _F("is_default", "bool", False, nullable=False),
    _F("fallback_server_id", "text", max_length=100),
    _F("options", "map", {}),
)  # fmt: skip

OAUTH_FIELDS: tuple[FieldSpec, ...] = (
    _F("oauth.provider", "choice", choices=("google", "microsoft"), secret_bound=True),
    _F("oauth.token_url", "text", max_length=500, secret_bound=True),
    _F("oauth.client_id", "text", max_length=500),
    _F("oauth.client_secret", "text", max_length=10_000, secret=True,
       sealed_as="oauth_client_secret"),
    _F("oauth.tenant_id", "text", max_length=200, secret_bound=True),
    _F("oauth.scope", "text", max_length=500),
    _F("oauth.service_account_json", "text", max_length=64 * 1024, multiline=True,
       secret=True, sealed_as="oauth_service_account_json"),
    _F("oauth.subject", "text", max_length=320),
    _F("oauth.grant", "choice", choices=("client_credentials", "password")),
    _F("oauth.username", "text", max_length=320, secret_bound=True),
    _F("oauth.password", "text", max_length=10_000, secret=True, sealed_as="oauth_password"),
)  # fmt: skip

IMAP_FIELDS: tuple[FieldSpec, ...] = (
    _F("imap.host", "text", nullable=False, max_length=255, secret_bound=True),
    _F("imap.port", "int", 993, nullable=False, minimum=1, maximum=65535, secret_bound=True),
    _F("imap.security", "choice", "tls", nullable=False, choices=("tls", "starttls"),
       secret_bound=True),
    _F("imap.username", "text", max_length=320, secret_bound=True),
    _F("imap.password", "text", max_length=10_000, secret=True, sealed_as="imap_password"),
    _F("imap.folder", "text", "INBOX", nullable=False, max_length=200),
    _F("imap.sync_interval_minutes", "int", minimum=1, maximum=10080),
    _F("imap.auth", "choice", "password", nullable=False, choices=("password", "xoauth2")),
    _F("imap.ca_certificates", "text", max_length=200_000, multiline=True, secret_bound=True),
    _F("imap.ca_keystore", "text", max_length=200, secret_bound=True),
    _F("imap.oauth", "object"),
)  # fmt: skip

#: An inbox's OAuth settings (``imap.auth: xoauth2``): Google's service account or a
#: Microsoft app's client credentials.
IMAP_OAUTH_FIELDS: tuple[FieldSpec, ...] = (
    _F("imap.oauth.provider", "choice", nullable=False, choices=("google", "microsoft"),
       secret_bound=True),
    _F("imap.oauth.client_id", "text", max_length=500),
    _F("imap.oauth.client_secret", "text", max_length=10_000, secret=True,
       sealed_as="imap_oauth_client_secret"),
    _F("imap.oauth.tenant_id", "text", max_length=200, secret_bound=True),
    _F("imap.oauth.scope", "text", max_length=500),
    _F("imap.oauth.token_url", "text", max_length=500, secret_bound=True),
    _F("imap.oauth.service_account_json", "text", max_length=64 * 1024, multiline=True,
       secret=True, sealed_as="imap_oauth_service_account_json"),
    _F("imap.oauth.subject", "text", max_length=320),
)  # fmt: skip

#: An email account's display name.
DISPLAY_NAME = _F("display_name", "text", nullable=False, max_length=200)

SERVER: dict[str, FieldSpec] = {f.name: f for f in SERVER_FIELDS}
OAUTH: dict[str, FieldSpec] = {f.name.split(".", 1)[1]: f for f in OAUTH_FIELDS}
IMAP: dict[str, FieldSpec] = {f.name.split(".", 1)[1]: f for f in IMAP_FIELDS}
IMAP_OAUTH: dict[str, FieldSpec] = {f.name.split(".", 2)[2]: f for f in IMAP_OAUTH_FIELDS}

#: Secret fields of a server: API name (``oauth.client_secret``) -> key in the sealed mapping.
SERVER_SECRETS: dict[str, str] = {
    f.name: str(f.sealed_as) for f in (*SERVER_FIELDS, *OAUTH_FIELDS) if f.secret
}
#: Plain (non-secret) server fields whose change requires the secret again; OAuth ones
#: are named ``oauth.<key>``.
SERVER_SECRET_BOUND: tuple[str, ...] = tuple(
    f.name for f in (*SERVER_FIELDS, *OAUTH_FIELDS) if f.secret_bound
)
#: The same for an account's IMAP settings (names without the ``imap.`` prefix): the
#: password goes to the server these name and trust.
IMAP_SECRET_BOUND: tuple[str, ...] = tuple(k for k, f in IMAP.items() if f.secret_bound)
#: Where an inbox's OAuth secrets go (names under ``imap.oauth``). The token endpoint is
#: verified with the inbox's ``ca_certificates`` (or ``ca_keystore``) as well, so changing
#: those needs the OAuth secret again too.
IMAP_OAUTH_SECRET_BOUND: tuple[str, ...] = tuple(k for k, f in IMAP_OAUTH.items() if f.secret_bound)
#: Server fields that cannot be cleared: an explicit null is refused.
SERVER_NOT_NULLABLE: frozenset[str] = frozenset(f.name for f in SERVER_FIELDS if not f.nullable)


def _value_at(values: Mapping[str, Any], path: str) -> Any:
    outer, _, inner = path.partition(".")
    if not inner:
        return values.get(outer)
    container = values.get(outer)
    return container.get(inner) if isinstance(container, Mapping) else None


def changed_secret_bound(
    old: Mapping[str, Any], new: Mapping[str, Any], *, fields: tuple[str, ...] = SERVER_SECRET_BOUND
) -> list[str]:
    """The secret-bound fields whose value differs between ``old`` and ``new`` (both full
    value mappings; OAuth settings nested under ``oauth``). Values are compared as text so
    an enum and its value are equal."""

    def norm(value: Any) -> Any:
        return getattr(value, "value", value)

    return [f for f in fields if norm(_value_at(old, f)) != norm(_value_at(new, f))]


# Hosts -------------------------------------------------------------------------------------

_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def host_problem(host: str) -> str | None:
    """What is wrong with ``host`` as a server's host name (``None`` when it is valid).

    A host is a DNS name or an IP address: no scheme, port, path or spaces.
    """
    if "://" in host:
        return "give the host name only, without a scheme such as smtp://"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if any(c.isspace() for c in host):
        return "must not contain spaces"
    if ":" in host and host.count(":") == 1:
        return "give the host name only; the port is its own field"
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return "is not a valid host name"
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")):
        return "must be a host name (letters, digits, hyphens and dots) or an IP address"
    return None


# Options -----------------------------------------------------------------------------------

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
# RFC 5321 section 4.1.1.1: a domain or an address literal; no spaces or controls.
EHLO_NAME = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?)$")


def _ehlo(value: str) -> str | None:
    if value.strip() and not EHLO_NAME.match(value.strip()):
        return (
            "must be a domain name (letters, digits, hyphens and dots; no underscores) "
            "or an address literal such as [192.0.2.1]"
        )
    return None


def _flag(value: str) -> str | None:
    word = value.strip().lower()
    return None if word in TRUE_WORDS | FALSE_WORDS else "must be true or false"


def _positive(value: str) -> str | None:
    try:
        number = float(value.strip()) if value.strip() else 1.0
    except ValueError:
        number = -1.0
    return None if 0 < number <= 86_400 else "must be a positive number of seconds"


def _count(value: str) -> str | None:
    raw = value.strip()
    ok = not raw or (raw.isdigit() and 1 <= int(raw) <= 1_000_000)
    return None if ok else "must be a whole number between 1 and 1000000"


#: The request path of SendGrid's v3 Mail Send endpoint (the ``send_path`` default).
SENDGRID_SEND_PATH = "/v3/mail/send"
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")


def _send_path(value: str) -> str | None:
    """An absolute URL path: ``/`` then non-empty segments of RFC 3986 path characters; no
    query, fragment, ``.``/``..`` segment or percent sign outside an escape."""
    path = value.strip()
    if not path.startswith("/") or path.startswith("//"):
        return "must be a path starting with a single / (such as /v3/mail/send)"
    if path == "/":
        return "must name the endpoint, not only /"
    for segment in path[1:].split("/"):
        if segment in ("", ".", "..") or not _PATH_SEGMENT.match(segment):
            return "must be a URL path without a query, a fragment, spaces, or empty, . or .. parts"
        if re.search(r"%(?![0-9A-Fa-f]{2})", segment):
            return "has a % that is not a percent-escape"
    return None


@dataclass(frozen=True, slots=True)
class OptionSpec:
    key: str
    description: str
    check: Callable[[str], str | None]
    #: The engines the option applies to (empty: every engine).
    engines: tuple[str, ...] = ()


OPTIONS: dict[str, OptionSpec] = {
    o.key: o
    for o in (
        OptionSpec("ehlo_name", "the name sent with EHLO (default: this host's FQDN)", _ehlo),
        OptionSpec("disable_auth_plain", '"true" uses AUTH LOGIN even if PLAIN is offered', _flag),
        OptionSpec("disable_pipelining", '"true" never pipelines', _flag),
        OptionSpec("disable_chunking", '"true" sends DATA, never BDAT (CHUNKING)', _flag),
        OptionSpec("connect_timeout", "seconds for TCP connect and TLS handshake", _positive),
        OptionSpec("greeting_timeout", "seconds to wait for the 220 greeting", _positive),
        OptionSpec("idle_timeout", "seconds an unused pooled connection is kept", _positive),
        OptionSpec("max_messages_per_connection", "messages sent on one connection (1000)", _count),
        OptionSpec(
            "send_path",
            f"SendGrid: the Mail Send path under api_base_url ({SENDGRID_SEND_PATH})",
            _send_path,
            engines=("sendgrid",),
        ),
    )
}
#: The longest option value.
MAX_OPTION_LENGTH = 500


def option_problems(
    options: Mapping[str, Any], *, engine: str | None = None
) -> list[tuple[str, str]]:
    """``(field, message)`` for every unknown key or invalid value of ``options``; the field
    is ``options.<key>``. With ``engine``, an option of another engine is a problem too."""
    problems: list[tuple[str, str]] = []
    for key, value in options.items():
        field = f"options.{key}"
        spec = OPTIONS.get(str(key))
        if spec is None:
            known = ", ".join(sorted(OPTIONS))
            problems.append((field, f"unknown option; known options are {known}"))
            continue
        if engine is not None and spec.engines and engine not in spec.engines:
            problems.append((field, f"applies to the {' and '.join(spec.engines)} engine only"))
            continue
        if not isinstance(value, str):
            problems.append((field, "must be a string"))
        elif len(value) > MAX_OPTION_LENGTH:
            problems.append((field, f"must be at most {MAX_OPTION_LENGTH} characters long"))
        elif has_controls(value):
            problems.append((field, "must not contain control characters"))
        else:
            message = spec.check(value)
            if message is not None:
                problems.append((field, message))
    return problems


#: Inline CA certificates and a CA keystore are one choice: trust one set of certificates.
CA_BOTH = "give either ca_certificates (PEM) or ca_keystore (a keystore's name), not both"


def server_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every field rule of this module broken by a server's full ``values`` (plain fields;
    OAuth nested under ``oauth``): types, bounds, nulls, the host, the CA choice and the
    options."""
    problems: list[tuple[str, str]] = []
    for spec in SERVER_FIELDS:
        if spec.secret or spec.name not in values:
            continue
        message = spec.problem(values[spec.name])
        if message is not None:
            problems.append((spec.name, message))
    oauth = values.get("oauth")
    if isinstance(oauth, Mapping):
        for key, value in oauth.items():
            oauth_spec = OAUTH.get(str(key))
            if oauth_spec is not None and not oauth_spec.secret:
                message = oauth_spec.problem(value)
                if message is not None:
                    problems.append((oauth_spec.name, message))
    host = values.get("host")
    if isinstance(host, str) and host and not any(p[0] == "host" for p in problems):
        message = host_problem(host)
        if message is not None:
            problems.append(("host", message))
    if values.get("ca_keystore") and values.get("ca_certificates"):
        problems.append(("ca_keystore", CA_BOTH))
    options = values.get("options")
    if isinstance(options, Mapping):
        engine = values.get("engine")
        name = str(getattr(engine, "value", engine)) if engine is not None else None
        problems += option_problems(options, engine=name)
    return problems
