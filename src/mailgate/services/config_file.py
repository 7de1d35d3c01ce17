"""The declarative configuration file: its shape, its secret references, and its rendering.

A document (JSON or TOML) holds ``version`` and ``tenants`` by slug; each tenant holds its
``name`` and, optionally, ``stages``, ``mail_servers`` by name, ``email_accounts`` by address
and ``apps`` by name (docs/config-file.md shows a complete file). Secrets are never in the
file: a secret field holds a reference, ``{"env": "VARIABLE"}`` or ``{"file": "/run/secrets/x"}``,
resolved when the file is read. Everything here is pure apart from reading a referenced file;
every error is a :class:`ConfigFileError` naming the field's path in the document
(``tenants.acme.mail_servers.relay.port``). :mod:`mailgate.services.config_plan` compares the
result with the database and applies it through the services.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailgate.domain import server_schema as schema
from mailgate.domain.providers import get_provider
from mailgate.domain.server_schema import FieldSpec
from mailgate.domain.servers import DEFAULT_PORTS, Security
from mailgate.errors import ConfigurationError, FieldError, RequestError, ValidationFailed
from mailgate.services import servers as server_service
from mailgate.services.accounts import check_address
from mailgate.services.servers import SECRET_FIELDS as SERVER_SECRETS

if TYPE_CHECKING:
    from mailgate.services.config_apps import AppSpec

VERSION = 1
ENV_PREFIX = "MAILGATE_SECRET_"


class ConfigFileError(ValidationFailed):
    """A value of the configuration file is invalid; ``path`` is where it is in the file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(
            f"{path}: {message}" if path else message, errors=[FieldError(path, message)]
        )
        self.path = path

    @classmethod
    def at(cls, path: str, exc: RequestError) -> ConfigFileError:
        """The error a service raised, placed at ``path`` (plus the field it named)."""
        if exc.errors:
            first = exc.errors[0]
            where = ".".join(p for p in (path, first.field) if p)
            return cls(where, first.message)
        return cls(path, exc.detail)


# Secret references ------------------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")


@dataclass(frozen=True, slots=True)
class Secret:
    """A resolved secret; its value never appears in ``repr`` or in a message."""

    ref: dict[str, str]
    value: str = field(repr=False)


def env_name(*parts: str) -> str:
    """The suggested variable for a secret: ``MAILGATE_SECRET_ACME_RELAY_PASSWORD``."""
    words = "_".join(re.sub(r"[^A-Z0-9]+", "_", p.upper()).strip("_") for p in parts)
    return ENV_PREFIX + re.sub(r"_+", "_", words)


#: Secret files are small (a password, an API key, a PEM key); anything larger is a mistake.
MAX_SECRET_FILE_BYTES = 64 * 1024


def resolve_secret(
    raw: Any, path: str, *, environ: Mapping[str, str], base_dir: Path, suggest: str
) -> Secret:
    """Resolve ``{"env": NAME}`` or ``{"file": PATH}``; a literal secret is refused."""
    example = f'{{"env": "{suggest}"}} or {{"file": "/run/secrets/{suggest.lower()}"}}'
    if isinstance(raw, str):
        raise ConfigFileError(
            path, f"secrets are never written in the file; give a reference such as {example}"
        )
    if not isinstance(raw, dict) or len(raw) != 1 or not set(raw) <= {"env", "file"}:
        raise ConfigFileError(path, f"must be a secret reference: {example}")
    kind, target = next(iter(raw.items()))
    if not isinstance(target, str) or not target:
        raise ConfigFileError(f"{path}.{kind}", "must be a non-empty string")
    if kind == "env":
        if not _ENV_NAME.match(target):
            raise ConfigFileError(f"{path}.env", f"{target!r} is not a valid variable name")
        value = environ.get(target)
        if not value:
            raise ConfigFileError(
                path, f"the environment variable {target} is not set (or is empty)"
            )
        return Secret({"env": target}, value)
    source = Path(target)
    source = source if source.is_absolute() else base_dir / source
    try:
        if not source.is_file():
            raise ConfigFileError(path, f"the secret file {target} is not a regular file")
        with source.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise ConfigFileError(
                path, f"the secret file {target} is larger than {MAX_SECRET_FILE_BYTES} bytes"
            )
        # Container secrets end with a newline that is not part of the secret.
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        # The error's text would quote a byte of the file: say only what is wrong.
        raise ConfigFileError(path, f"the secret file {target} is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigFileError(path, f"cannot read the secret file {target}: {reason}") from None
    if not value:
        raise ConfigFileError(path, f"the secret file {target} is empty")
    return Secret({"file": target}, value)


# Value checks --------------------------------------------------------------------------------

Check = Callable[[Any, str], Any]


def _text(max_len: int = 500, *, multiline: bool = False) -> Check:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise ConfigFileError(path, "must be a string")
        if len(value) > max_len:
            raise ConfigFileError(path, f"must be at most {max_len} characters long")
        if schema.has_controls(value, allow_line_breaks=multiline):
            raise ConfigFileError(path, "must not contain control characters")
        return value

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigFileError(path, "must be a whole number")
        if not low <= value <= high:
            raise ConfigFileError(path, f"must be between {low} and {high}")
        return value

    return check


def _seconds(low: float, high: float) -> Check:
    def check(value: Any, path: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigFileError(path, "must be a number of seconds")
        if not low < value <= high:
            raise ConfigFileError(path, f"must be more than {low:g} and at most {high:g}")
        return float(value)

    return check


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigFileError(path, "must be true or false")
    return value


def _choice(*options: str) -> Check:
    def check(value: Any, path: str) -> str:
        if value not in options:
            raise ConfigFileError(path, f"must be one of {', '.join(options)}")
        return str(value)

    return check


def _names(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigFileError(path, "must be a list of names")
    names = [_text(100)(item, f"{path}[{i}]") for i, item in enumerate(value)]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigFileError(f"{path}[{i}]", f"{name!r} is listed twice")
    return names


def _options(value: Any, path: str) -> dict[str, str]:
    """Known option keys with valid values (the server schema's rules), else an error
    naming ``options.<key>``."""
    table = _table(value, path)
    options = {str(k): _text(schema.MAX_OPTION_LENGTH)(v, f"{path}.{k}") for k, v in table.items()}
    for where, message in schema.option_problems(options):
        raise ConfigFileError(f"{path}.{where.split('.', 1)[1]}", message)
    return options


def _table(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(path, "must be a table (an object)")
    return value


def _fields(
    raw: Any, path: str, schema: Mapping[str, Check], *, secrets: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Check every field of a table against ``schema``; unknown fields are refused."""
    table = _table(raw, path)
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in secrets:
            continue
        if key not in schema:
            known = ", ".join(sorted({*schema, *secrets}))
            raise ConfigFileError(f"{path}.{key}", f"unknown field; expected one of {known}")
        out[key] = schema[key](value, f"{path}.{key}")
    return out


def _check_for(spec: FieldSpec) -> Check:
    """The file's check of one field of the server schema (its types and bounds)."""
    if spec.kind == "choice":
        return _choice(*spec.choices)
    if spec.kind == "bool":
        return _boolean
    if spec.kind == "int":
        return _integer(int(spec.minimum or 0), int(spec.maximum or 0))
    if spec.kind == "float":
        return _seconds(float(spec.minimum or 0), float(spec.maximum or 0))
    length = spec.max_length or 500
    return _text(length, multiline=spec.multiline)


def _schema_checks(specs: Mapping[str, FieldSpec]) -> dict[str, Check]:
    return {k: _check_for(f) for k, f in specs.items() if not f.secret and f.kind != "object"}


_OAUTH_SECRETS = tuple(k for k, f in schema.OAUTH.items() if f.secret)
OAUTH: dict[str, Check] = _schema_checks(schema.OAUTH)
#: Server fields as the file names them: the fallback is named by ``fallback_server``.
_SERVER: dict[str, Check] = {
    **{
        k: c
        for k, c in _schema_checks(schema.SERVER).items()
        if k not in ("fallback_server_id", "stages", "options")
    },
    "oauth": lambda v, p: _fields(v, p, OAUTH, secrets=frozenset(_OAUTH_SECRETS)),
    "stages": _names,
    "fallback_server": _text(200),
    "options": _options,
}
_SERVER_SECRETS = frozenset(k for k, f in schema.SERVER.items() if f.secret)
OAUTH_KEYS = tuple(OAUTH)
#: An inbox's OAuth settings (``imap.oauth``); the secrets are given by reference.
IMAP_OAUTH_SECRETS = tuple(k for k, f in schema.IMAP_OAUTH.items() if f.secret)
IMAP_OAUTH: dict[str, Check] = _schema_checks(schema.IMAP_OAUTH)
_IMAP: dict[str, Check] = {
    **_schema_checks(schema.IMAP),
    "oauth": lambda v, p: _fields(v, p, IMAP_OAUTH, secrets=frozenset(IMAP_OAUTH_SECRETS)),
}
_ACCOUNT: dict[str, Check] = {
    "display_name": _check_for(schema.DISPLAY_NAME),
    "description": _text(200),
    "reply_to": _text(320),
    "mail_server": _text(200),
    "is_default": _boolean,
    "imap": lambda v, p: _fields(
        v, p, _IMAP, secrets=frozenset(k for k, f in schema.IMAP.items() if f.secret)
    ),
}


# The desired configuration -----------------------------------------------------------------


#: A server's plain settings and their values when the file leaves them out.
def _server_defaults() -> dict[str, Any]:
    """The service's defaults as the file writes them: ``port`` follows ``host`` (None: the
    security's usual port) and the fallback is named by ``fallback_server``, not an id."""
    values: dict[str, Any] = {}
    for key, value in server_service.DEFAULTS.items():
        if key == "fallback_server_id":
            continue
        values[key] = copy.deepcopy(value)  # never share the service's mutable defaults
        if key == "host":
            values["port"] = None
    return values


SERVER_DEFAULTS: dict[str, Any] = _server_defaults()
IMAP_DEFAULTS: dict[str, Any] = {
    "host": None,
    "port": 993,
    "security": "tls",
    "username": None,
    "folder": "INBOX",
    "sync_interval_minutes": None,
    "auth": "password",
    "ca_certificates": None,
    "ca_keystore": None,
    "oauth": None,
}


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    path: str
    values: dict[str, Any]  # every key of SERVER_DEFAULTS, provider presets filled in
    stages: tuple[str, ...]
    fallback: str | None
    secrets: dict[str, Secret]  # API field (``oauth.client_secret``) -> secret


@dataclass(frozen=True, slots=True)
class AccountSpec:
    address: str
    path: str
    display_name: str
    reply_to: str | None
    mail_server: str | None  # None: keep the account's server
    is_default: bool
    imap: dict[str, Any] | None
    imap_password: Secret | None
    #: ``oauth.client_secret`` / ``oauth.service_account_json`` -> secret
    imap_secrets: dict[str, Secret] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True, slots=True)
class TenantSpec:
    """One tenant; a section left out of the file (``None``) is left alone, even by prune."""

    slug: str
    path: str
    name: str
    stages: tuple[str, ...] | None
    servers: dict[str, ServerSpec] | None
    accounts: dict[str, AccountSpec] | None
    apps: dict[str, AppSpec] | None


def read_document(path: Path) -> dict[str, Any]:
    """The raw document of a ``.json`` or ``.toml`` file."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigFileError("", f"{path.name}: use a .json or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    return loads_document(text, fmt=suffix[1:])


def loads_document(text: str, *, fmt: str) -> dict[str, Any]:
    try:
        doc = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigFileError("", f"not valid {fmt.upper()}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigFileError("", "the document must be a table (an object) at the top level")
    return doc


def parse(
    doc: Mapping[str, Any], *, environ: Mapping[str, str], base_dir: Path
) -> dict[str, TenantSpec]:
    """The tenants a document describes, checked and with every secret resolved."""
    unknown = sorted(set(doc) - {"version", "tenants"})
    if unknown:
        raise ConfigFileError(unknown[0], "unknown field; expected version and tenants")
    if doc.get("version") != VERSION:
        raise ConfigFileError("version", f"must be {VERSION} (the format this Mailgate reads)")
    tenants = _table(doc.get("tenants", {}), "tenants")
    return {
        slug: _tenant(slug, raw, environ=environ, base_dir=base_dir)
        for slug, raw in tenants.items()
    }


def _tenant(slug: str, raw: Any, *, environ: Mapping[str, str], base_dir: Path) -> TenantSpec:
    path = f"tenants.{slug}"
    keys = {"name", "stages", "mail_servers", "email_accounts", "apps"}
    table = _table(raw, path)
    for key in table:
        if key not in keys:
            raise ConfigFileError(f"{path}.{key}", f"unknown field; expected one of {sorted(keys)}")
    if "name" not in table:
        raise ConfigFileError(f"{path}.name", "is required")
    name = _text(200)(table["name"], f"{path}.name").strip()
    stages = tuple(_names(table["stages"], f"{path}.stages")) if "stages" in table else None

    def section(key: str) -> dict[str, Any] | None:
        return _table(table[key], f"{path}.{key}") if key in table else None

    raw_servers, raw_accounts, raw_apps = (
        section("mail_servers"),
        section("email_accounts"),
        section("apps"),
    )
    servers = None
    if raw_servers is not None:
        servers = {
            n: _server(slug, n, v, f"{path}.mail_servers.{n}", environ, base_dir)
            for n, v in raw_servers.items()
        }
    accounts: dict[str, AccountSpec] | None = None
    if raw_accounts is not None:
        accounts = {}
        for address, value in raw_accounts.items():
            account = _account(slug, address, value, path, environ, base_dir)
            if account.address.lower() in {a.lower() for a in accounts}:
                raise ConfigFileError(account.path, "this address is listed twice")
            accounts[account.address] = account
    apps = None
    if raw_apps is not None:
        # Apps and their lists are read in their own module (which uses this one's errors).
        from mailgate.services.config_apps import parse_app

        apps = {n: parse_app(n, v, f"{path}.apps.{n}") for n, v in raw_apps.items()}
    return TenantSpec(slug, path, name, stages, servers, accounts, apps)


def _server(
    slug: str, name: str, raw: Any, path: str, environ: Mapping[str, str], base_dir: Path
) -> ServerSpec:
    given = _fields(raw, path, _SERVER, secrets=_SERVER_SECRETS)
    table, oauth_raw = _table(raw, path), raw.get("oauth") if isinstance(raw, dict) else None
    secrets: dict[str, Secret] = {}
    for api_name, key in SERVER_SECRETS.items():
        outer, _, inner = api_name.rpartition(".")
        container = (oauth_raw if outer else table) or {}
        if inner in container:
            secrets[api_name] = resolve_secret(
                container[inner],
                f"{path}.{api_name}",
                environ=environ,
                base_dir=base_dir,
                suggest=env_name(slug, name, key),
            )
    values = {**SERVER_DEFAULTS, **given}
    values.pop("stages", None)
    values.pop("fallback_server", None)
    values["oauth"] = plain_oauth(values["oauth"])
    if values["provider"]:
        preset = get_provider(values["provider"])
        if preset is None:
            raise ConfigFileError(f"{path}.provider", f"unknown provider {values['provider']!r}")
        for key, preset_value in (
            ("host", preset.host),
            ("port", preset.port),
            ("security", preset.security.value),
        ):
            if key not in given:
                values[key] = preset_value
        if "engine" not in given:
            values["engine"] = preset.engine.value
    if values["port"] is None:
        values["port"] = DEFAULT_PORTS[Security(values["security"])]
    for where, message in schema.server_problems(values):
        raise ConfigFileError(f"{path}.{where}", message)
    return ServerSpec(
        name=name,
        path=path,
        values=values,
        stages=tuple(given.get("stages", ())),
        fallback=given.get("fallback_server"),
        secrets=secrets,
    )


def _account(
    slug: str, key: str, raw: Any, tenant_path: str, environ: Mapping[str, str], base_dir: Path
) -> AccountSpec:
    path = f"{tenant_path}.email_accounts.{key}"
    address = _address(key, path)
    given = _fields(raw, path, _ACCOUNT)
    reply_to = _address(given["reply_to"], f"{path}.reply_to") if given.get("reply_to") else None
    if "display_name" not in given or not given["display_name"].strip():
        raise ConfigFileError(f"{path}.display_name", "is required")
    imap, password = None, None
    imap_secrets: dict[str, Secret] = {}
    if "imap" in given:
        imap = {**IMAP_DEFAULTS, **given["imap"]}
        if not imap["host"]:
            raise ConfigFileError(f"{path}.imap.host", "is required when imap is given")
        problem = schema.host_problem(imap["host"])
        if problem is not None:
            raise ConfigFileError(f"{path}.imap.host", problem)
        if "password" in raw["imap"]:
            password = resolve_secret(
                raw["imap"]["password"],
                f"{path}.imap.password",
                environ=environ,
                base_dir=base_dir,
                suggest=env_name(slug, address, "imap_password"),
            )
        raw_oauth = raw["imap"].get("oauth")
        for name in IMAP_OAUTH_SECRETS if isinstance(raw_oauth, dict) else ():
            if name in raw_oauth:
                imap_secrets[f"oauth.{name}"] = resolve_secret(
                    raw_oauth[name],
                    f"{path}.imap.oauth.{name}",
                    environ=environ,
                    base_dir=base_dir,
                    suggest=env_name(slug, address, f"imap_oauth_{name}"),
                )
    return AccountSpec(
        address=address,
        path=path,
        display_name=given["display_name"].strip(),
        reply_to=reply_to,
        mail_server=given.get("mail_server"),
        is_default=given.get("is_default", False),
        imap=imap,
        imap_password=password,
        imap_secrets=imap_secrets,
        description=given.get("description", "").strip(),
    )


def _address(value: str, path: str) -> str:
    """A bare, valid address as the services store it (the send path's strict parser)."""
    try:
        return check_address(value, path)
    except RequestError as exc:
        raise ConfigFileError.at("", exc) from None


def plain_oauth(oauth: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OAuth settings without secrets or unset keys (``None`` when nothing is left)."""
    clean = {k: v for k, v in (oauth or {}).items() if v is not None and k in OAUTH_KEYS}
    return clean or None


def dumps_document(doc: Mapping[str, Any], *, fmt: str) -> str:
    """``doc`` as JSON or TOML text (TOML needs the ``tomli-w`` package)."""
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    try:
        tomli_w = importlib.import_module("tomli_w")
    except ImportError:
        raise ConfigurationError(
            "writing TOML needs the tomli-w package (pip install tomli-w); "
            "or export JSON with --format json"
        ) from None
    return str(tomli_w.dumps(doc, multiline_strings=True))
