"""CodeStream's ``codestream-services-config.json``, read as a tenant's mail servers.

CodeStream On-Prem keeps its outbound email settings in the ``emailDeliveryService``
section of that file: ``NodeMailer`` (SMTP through the NodeMailer library) and/or
``sendgrid`` (the v3 Web API). :func:`translate` turns the section into a configuration
document of :mod:`mailgate.services.config_file` (version 1, one tenant, its
``mail_servers``), so ``mailgate config import-codestream`` plans and applies it with the
same machinery as ``mailgate config apply``. The secrets the CodeStream file holds in plain
text never appear in that document: each is an ``{"env": NAME}`` reference, and the value
travels beside it in :attr:`Imported.secret_values` (to be stored encrypted by the apply).

NodeMailer's rules are followed where Mailgate has an equivalent:

* ``service`` names a well-known service, whose settings win over ``host``, ``port`` and
  ``secure`` (as in NodeMailer); it becomes the server's provider preset. An unknown name
  is an error listing the known ones.
* ``secure: true`` is TLS from the first byte (``security: tls``); otherwise STARTTLS
  (``starttls``; NodeMailer upgrades when the server offers it, Mailgate insists), or none
  with ``ignoreTLS: true``. ``port`` may be a number or a string; by default 465 with
  ``secure``, else 587.
* Credentials come from ``auth.user``/``auth.pass`` (NodeMailer) or ``username``/
  ``password`` (CodeStream's own keys).

CodeStream sends through ``sendgrid`` when both are configured (unless ``selected`` says
otherwise) and skips a section with ``disabled: true``; the server it would use becomes
the tenant's default, the other is imported without being the default. Pure apart from
reading the file; every error is a :class:`ConfigFileError` naming the path in the
CodeStream file (``emailDeliveryService.NodeMailer.port``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailgate.domain import server_schema as schema
from mailgate.domain.providers import SES_REGIONS, get_provider
from mailgate.errors import ConfigurationError
from mailgate.services.config_file import VERSION, ConfigFileError, env_name

SECTION = "emailDeliveryService"
SMTP_KEY = "NodeMailer"
SENDGRID_KEY = "sendgrid"

#: NodeMailer's well-known service names (lower case, as NodeMailer compares them) and the
#: Mailgate provider preset that serves the same host.
SERVICES: dict[str, str] = {
    "gmail": "gmail",
    "googlemail": "gmail",
    "googlemail.com": "gmail",
    "gmail.com": "gmail",
    "office365": "microsoft365",
    "outlook365": "microsoft365",
    "hotmail": "outlook",
    "outlook": "outlook",
    "outlook.com": "outlook",
    "hotmail.com": "outlook",
    "yahoo": "yahoo",
    "yahoo.com": "yahoo",
    "aol": "aol",
    "icloud": "icloud",
    "me.com": "icloud",
    "mac.com": "icloud",
    "zoho": "zoho",
    "fastmail": "fastmail",
    "gmx": "gmx-com",
    "sendgrid": "sendgrid",
    "mailgun": "mailgun",
    "postmark": "postmark",
    "mailjet": "mailjet",
    "sendinblue": "brevo",
    "brevo": "brevo",
    "ses": "ses-us-east-1",
    **{f"ses-{region}": f"ses-{region}" for region in SES_REGIONS},
}

_SMTP_KEYS = frozenset(
    {
        "service", "host", "port", "secure", "requireTLS", "ignoreTLS", "auth", "username",
        "password", "tls", "name", "maxConnections", "connectionTimeout", "greetingTimeout",
        "socketTimeout", "disabled", "emailTo",
    }
)  # fmt: skip
_SENDGRID_KEYS = frozenset({"apiKey", "url", "disabled", "emailTo"})


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where one imported secret came from and the reference that stands for it."""

    server: str
    field: str  # the server's field: password or api_key
    env: str
    source: str  # its path in the CodeStream file


@dataclass(slots=True)
class Imported:
    """The configuration document, the secrets' values by variable, and what to tell."""

    document: dict[str, Any]
    secret_values: dict[str, str] = field(repr=False)
    secrets: list[SecretRef]
    notes: list[str]
    #: Server name -> its section in the CodeStream file.
    sources: dict[str, str]
    default: str | None


# Reading the file ---------------------------------------------------------------------------


def read_file(path: Path) -> dict[str, Any]:
    """The document of a CodeStream config file. Comments (``//``, ``/* */``) and trailing
    commas, which its documentation's snippets carry, are tolerated."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    return loads(text)


def loads(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(_strip_comments(text))
    except json.JSONDecodeError as exc:
        raise ConfigFileError("", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigFileError("", "the file must hold a JSON object at the top level")
    return doc


#: Blanks and comments, then a closing bracket: what follows a trailing comma.
_CLOSES = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)*[}\]]", re.DOTALL)


def _strip_comments(text: str) -> str:
    """``text`` without comments and without commas before a closing bracket; strings are
    copied untouched. Line breaks are kept, so JSON errors name the right line."""
    pieces: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = _string_end(text, i)
            pieces.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            pieces.append("\n" * text.count("\n", i, end))
            i = end
        elif char == "," and _CLOSES.match(text, i + 1):
            i += 1  # a trailing comma
        else:
            pieces.append(char)
            i += 1
    return "".join(pieces)


def _string_end(text: str, start: int) -> int:
    """The index just past the JSON string that starts at ``start``."""
    end = start + 1
    while end < len(text) and text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    return end + 1


# Translating ---------------------------------------------------------------------------------


def translate(
    doc: Mapping[str, Any],
    *,
    tenant: str,
    tenant_name: str,
    prefix: str = "codestream",
    make_default: bool = True,
) -> Imported:
    """The configuration document for ``doc``'s ``emailDeliveryService`` section."""
    if SECTION not in doc:
        raise ConfigFileError(
            SECTION, "the file has no emailDeliveryService section (CodeStream's outbound email)"
        )
    section = doc[SECTION]
    if not isinstance(section, dict):
        raise ConfigFileError(SECTION, "must be an object")
    if SMTP_KEY not in section and SENDGRID_KEY not in section:
        raise ConfigFileError(
            SECTION, f"has neither {SMTP_KEY} nor {SENDGRID_KEY}; nothing to import"
        )
    out = Imported({}, {}, [], [], {}, None)
    servers: dict[str, dict[str, Any]] = {}
    enabled: dict[str, str] = {}  # section key -> server name
    for key, suffix, build in ((SENDGRID_KEY, "sendgrid", _sendgrid), (SMTP_KEY, "smtp", _smtp)):
        if key not in section:
            continue
        path = f"{SECTION}.{key}"
        raw = section[key]
        if not isinstance(raw, dict):
            raise ConfigFileError(path, "must be an object")
        name = f"{prefix}-{suffix}"
        servers[name] = build(raw, path, name, tenant, out)
        out.sources[name] = path
        if _flag(raw.get("disabled", False), f"{path}.disabled"):
            out.notes.append(f"{path} is disabled: imported as {name}, not the default server")
        else:
            enabled[key] = name
    for key in sorted(set(section) - {SMTP_KEY, SENDGRID_KEY, "selected"}):
        out.notes.append(f"{SECTION}.{key} is not an email engine Mailgate imports; ignored")
    out.default = _selected(section, enabled, out.notes)
    for name, server in servers.items():
        server["is_default"] = make_default and name == out.default
    if out.default is None:
        out.notes.append("no section is enabled: no imported server was made the default")
    elif not make_default:
        out.notes.append(f"CodeStream sends through {out.default}; --no-default left it as is")
    if any(raw.get("emailTo") for raw in section.values() if isinstance(raw, dict)):
        out.notes.append(
            "emailTo (all mail diverted to one address) is not imported: in Mailgate an app's "
            "test list redirects a stage's mail (docs/config-file.md)"
        )
    if out.secrets:
        out.notes.append(
            "the CodeStream file holds these secrets in plain text; once CodeStream no longer "
            "reads it, remove them from it"
        )
    out.document = {
        "version": VERSION,
        "tenants": {tenant: {"name": tenant_name, "mail_servers": servers}},
    }
    return out


def _selected(
    section: Mapping[str, Any], enabled: Mapping[str, str], notes: list[str]
) -> str | None:
    """The server CodeStream sends through: ``selected``, else SendGrid, else NodeMailer."""
    chosen = section.get("selected")
    if chosen is not None:
        if chosen not in (SMTP_KEY, SENDGRID_KEY):
            raise ConfigFileError(
                f"{SECTION}.selected", f"must be {SMTP_KEY} or {SENDGRID_KEY}, not {chosen!r}"
            )
        if chosen in enabled:
            return enabled[chosen]
        notes.append(f"{SECTION}.selected names {chosen}, which is missing or disabled")
    for key in (SENDGRID_KEY, SMTP_KEY):
        if key in enabled:
            return enabled[key]
    return None


def _secret(
    out: Imported, tenant: str, server: str, api_field: str, value: str, source: str
) -> dict[str, str]:
    variable = env_name(tenant, server, api_field)
    out.secret_values[variable] = value
    out.secrets.append(SecretRef(server, api_field, variable, source))
    return {"env": variable}


def _ignored(raw: Mapping[str, Any], known: frozenset[str], path: str, out: Imported) -> None:
    extra = sorted(set(raw) - known)
    if extra:
        out.notes.append(f"{path}: {', '.join(extra)} ignored (no Mailgate equivalent)")


def _sendgrid(
    raw: Mapping[str, Any], path: str, name: str, tenant: str, out: Imported
) -> dict[str, Any]:
    _ignored(raw, _SENDGRID_KEYS, path, out)
    key = raw.get("apiKey")
    if not isinstance(key, str) or not key.strip():
        raise ConfigFileError(f"{path}.apiKey", "is required: the SendGrid API key")
    server: dict[str, Any] = {"engine": "sendgrid"}
    server["api_key"] = _secret(out, tenant, name, "api_key", key.strip(), f"{path}.apiKey")
    url = raw.get("url")
    if url is not None and url != "":
        if not isinstance(url, str):
            raise ConfigFileError(f"{path}.url", "must be a string")
        send_path = url.strip()
        if "://" in send_path:
            parts = urlsplit(send_path)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigFileError(
                    f"{path}.url", "must be a path such as /v3/mail/send or an https URL"
                )
            if parts.query or parts.fragment:
                raise ConfigFileError(f"{path}.url", "must not have a query or a fragment")
            server["api_base_url"] = f"{parts.scheme}://{parts.netloc}"
            send_path = parts.path or schema.SENDGRID_SEND_PATH
        problem = schema.OPTIONS["send_path"].check(send_path)
        if problem is not None:
            raise ConfigFileError(f"{path}.url", problem)
        if send_path != schema.SENDGRID_SEND_PATH:
            server["options"] = {"send_path": send_path}
    return server


def _smtp(
    raw: Mapping[str, Any], path: str, name: str, tenant: str, out: Imported
) -> dict[str, Any]:
    _ignored(raw, _SMTP_KEYS, path, out)
    server: dict[str, Any] = {"engine": "smtp"}
    secure = _flag(raw.get("secure", False), f"{path}.secure")
    require_tls = _flag(raw.get("requireTLS", False), f"{path}.requireTLS")
    ignore_tls = _flag(raw.get("ignoreTLS", False), f"{path}.ignoreTLS")
    port = _port(raw.get("port"), f"{path}.port")
    service = raw.get("service")
    if service is not None and service != "":
        server["provider"] = _service(service, f"{path}.service")
        preset = get_provider(server["provider"])
        assert preset is not None  # every SERVICES value is a preset key
        given = [k for k in ("host", "port", "secure") if raw.get(k) not in (None, "")]
        if given:
            out.notes.append(
                f"{path}: service {service!r} decides the host, port and security "
                f"({preset.host}:{preset.port}, {preset.security.value}), as in NodeMailer; "
                f"{', '.join(given)} ignored"
            )
    else:
        host = raw.get("host")
        if not isinstance(host, str) or not host.strip():
            raise ConfigFileError(f"{path}.host", "is required (or a well-known service)")
        problem = schema.host_problem(host.strip())
        if problem is not None:
            raise ConfigFileError(f"{path}.host", problem)
        server["host"] = host.strip()
        if secure:
            server["security"] = "tls"
        elif ignore_tls:
            server["security"] = "none"
        else:
            server["security"] = "starttls"
            if not require_tls:
                out.notes.append(
                    f"{path}: NodeMailer used STARTTLS only when the server offered it; "
                    "Mailgate requires it (security starttls)"
                )
        server["port"] = port if port is not None else (465 if secure else 587)
        if secure and server["port"] == 587:
            out.notes.append(
                f"{path}: secure true on port 587 means TLS from the first byte (as NodeMailer "
                "does); most servers expect STARTTLS there: if Test Connection says "
                "tls_on_plain_port, set security to starttls"
            )
    _credentials(raw, path, name, tenant, server, out)
    _tls(raw.get("tls"), f"{path}.tls", server, out)
    _tuning(raw, path, server)
    return server


def _service(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigFileError(path, "must be a string")
    key = re.sub(r"[^a-z0-9.-]", "", value.lower())
    if key not in SERVICES:
        known = ", ".join(
            sorted({k for k in SERVICES if not k.startswith("ses-")} | {"SES-<region>"})
        )
        raise ConfigFileError(
            path, f"unknown service {value!r}; known services are {known}; or give host and port"
        )
    return SERVICES[key]


def _credentials(
    raw: Mapping[str, Any], path: str, name: str, tenant: str, server: dict[str, Any], out: Imported
) -> None:
    auth = raw.get("auth")
    user, password = raw.get("username"), raw.get("password")
    user_path, pass_path = f"{path}.username", f"{path}.password"
    if auth is not None:
        if not isinstance(auth, dict):
            raise ConfigFileError(f"{path}.auth", "must be an object with user and pass")
        kind = str(auth.get("type", "login")).lower()
        extra = sorted(set(auth) - {"user", "pass", "type"})
        if kind != "login" or extra:
            raise ConfigFileError(
                f"{path}.auth",
                "only user and pass can be imported; set up OAuth2 on the server in Mailgate "
                "(auth xoauth2, docs/configuration.md)",
            )
        for ours, theirs, label in (("user", user, "username"), ("pass", password, "password")):
            if ours in auth and theirs not in (None, "") and auth[ours] != theirs:
                raise ConfigFileError(f"{path}.auth.{ours}", f"differs from {path}.{label}")
        if "user" in auth:
            user, user_path = auth["user"], f"{path}.auth.user"
        if "pass" in auth:
            password, pass_path = auth["pass"], f"{path}.auth.pass"
    if user in (None, ""):
        server["auth"] = "none"
        if password not in (None, ""):
            out.notes.append(f"{pass_path} ignored: without a user NodeMailer sends no credentials")
        return
    if not isinstance(user, str):
        raise ConfigFileError(user_path, "must be a string")
    if not isinstance(password, str) or not password:
        raise ConfigFileError(pass_path, f"is required with {user_path} (it is empty or missing)")
    server["auth"] = "password"
    server["username"] = user.strip()
    server["password"] = _secret(out, tenant, name, "password", password, pass_path)
    if server.get("security") == "none":
        raise ConfigFileError(
            f"{path}.ignoreTLS",
            "would send the password unencrypted; Mailgate refuses that: remove ignoreTLS",
        )


def _tls(raw: Any, path: str, server: dict[str, Any], out: Imported) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise ConfigFileError(path, "must be an object")
    if "rejectUnauthorized" in raw:
        server["verify_certificate"] = _flag(
            raw["rejectUnauthorized"], f"{path}.rejectUnauthorized"
        )
    ca = raw.get("ca")
    if ca is not None:
        items = ca if isinstance(ca, list) else [ca]
        if not items or not all(isinstance(c, str) and "BEGIN CERTIFICATE" in c for c in items):
            raise ConfigFileError(f"{path}.ca", "must be PEM certificate text (or a list of them)")
        server["ca_certificates"] = "\n".join(c.strip() for c in items) + "\n"
    version = raw.get("minVersion")
    if version is not None:
        versions = {"TLSv1.2": "1.2", "TLSv1.3": "1.3"}
        if version in versions:
            server["min_tls_version"] = versions[version]
        else:
            out.notes.append(f"{path}.minVersion {version!r}: Mailgate never goes below TLS 1.2")
    _ignored(raw, frozenset({"rejectUnauthorized", "ca", "minVersion"}), path, out)


def _tuning(raw: Mapping[str, Any], path: str, server: dict[str, Any]) -> None:
    options: dict[str, str] = {}
    if raw.get("name") not in (None, ""):
        options["ehlo_name"] = str(raw["name"])
    for key, option in (
        ("connectionTimeout", "connect_timeout"),
        ("greetingTimeout", "greeting_timeout"),
    ):
        if key in raw:
            options[option] = f"{_millis(raw[key], f'{path}.{key}', 86_400):g}"
    for where, message in schema.option_problems(options):
        theirs = "name" if where == "options.ehlo_name" else where
        raise ConfigFileError(f"{path}.{theirs}", message)
    if options:
        server["options"] = options
    if "socketTimeout" in raw:
        server["timeout_seconds"] = _millis(raw["socketTimeout"], f"{path}.socketTimeout", 600)
    if "maxConnections" in raw:
        count = _number(raw["maxConnections"], f"{path}.maxConnections")
        if count != int(count) or not 1 <= count <= 100:
            raise ConfigFileError(f"{path}.maxConnections", "must be a whole number from 1 to 100")
        server["max_connections"] = int(count)


# Values ------------------------------------------------------------------------------------


def _flag(value: Any, path: str) -> bool:
    """A JSON boolean, or ``"true"``/``"false"`` as hand-edited files sometimes have."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigFileError(path, "must be true or false")


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise ConfigFileError(path, "must be a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigFileError(path, f"must be a number, not {value!r}") from None
    if not isinstance(value, int | float):
        raise ConfigFileError(path, "must be a number")
    return float(value)


def _port(value: Any, path: str) -> int | None:
    """A port given as a number or as a string of digits (``"587"``); ``None`` if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and not value.strip().isdigit():
        raise ConfigFileError(path, f"must be a port number, not {value!r}")
    number = _number(value, path)
    if number != int(number) or not 1 <= number <= 65535:
        raise ConfigFileError(path, "must be a whole number between 1 and 65535")
    return int(number)


def _millis(value: Any, path: str, limit: float) -> float:
    """NodeMailer's milliseconds as Mailgate's seconds."""
    seconds = _number(value, path) / 1000
    if not 0 < seconds <= limit:
        raise ConfigFileError(
            path, f"must be more than 0 and at most {limit * 1000:g} milliseconds"
        )
    return seconds


def source_of(path: str, imported: Imported) -> str:
    """A path of the generated document (``tenants.acme.mail_servers.codestream-smtp.port``)
    told as the CodeStream section it came from."""
    for name, source in imported.sources.items():
        marker = f".mail_servers.{name}"
        if marker in path:
            rest = path.split(marker, 1)[1].lstrip(".")
            where = f"{source} (mail server {name})"
            return f"{where}, field {rest}" if rest else where
    return path
