"""HTML form data → the API's field mappings, and errors → messages per field.

The forms use the API's field names (``host``, ``oauth.client_id``, ``imap.port``), so the
field names of the services' :class:`~mailgate.errors.ValidationFailed` errors point at the
inputs as they are. Values are checked by the API's own request models first (types and
ranges) and then by the services (every rule): the UI adds no rule of its own beyond turning
text into numbers and lines into lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from mailgate.domain.server_schema import (
    IMAP,
    IMAP_FIELDS,
    IMAP_OAUTH,
    IMAP_OAUTH_FIELDS,
    OAUTH_FIELDS,
    SERVER_FIELDS,
    SERVER_NOT_NULLABLE,
)
from mailgate.errors import FieldError, RequestError, ValidationFailed

#: Server fields of every engine; then those of each engine.
SERVER_COMMON = ("name", "engine", "provider", "timeout_seconds", "rate_limit_per_minute")
SERVER_BY_ENGINE: dict[str, tuple[str, ...]] = {
    "smtp": (
        "host",
        "port",
        "security",
        "min_tls_version",
        "ca_certificates",
        "ca_keystore",
        "auth",
        "username",
        "password",
        "max_connections",
    ),
    "sendgrid": ("api_key", "api_base_url"),
    "msgraph": ("sender_upn", "api_base_url"),
    "capture": (),
}
SERVER_FLAGS: dict[str, tuple[str, ...]] = {
    "smtp": ("verify_certificate", "allow_insecure_auth"),
}
OAUTH_BY_ENGINE: dict[str, tuple[str, ...]] = {
    "smtp": (
        "provider",
        "client_id",
        "client_secret",
        "tenant_id",
        "token_url",
        "scope",
        "subject",
        "service_account_json",
    ),
    "msgraph": (
        "client_id",
        "client_secret",
        "tenant_id",
        "token_url",
        "grant",
        "username",
        "password",
    ),
}
_ALL_FIELDS = (*SERVER_FIELDS, *OAUTH_FIELDS, *IMAP_FIELDS, *IMAP_OAUTH_FIELDS)
#: Inputs by their last name (``client_secret`` of ``oauth.client_secret``), from the schema.
SECRETS = frozenset(f.name.rsplit(".", 1)[-1] for f in _ALL_FIELDS if f.secret)
#: Fields that cannot be cleared: blank keeps the stored value on edit.
KEEP_WHEN_BLANK = SERVER_NOT_NULLABLE | {"provider"}
INTEGERS = frozenset(f.name.rsplit(".", 1)[-1] for f in _ALL_FIELDS if f.kind == "int")
NUMBERS = frozenset(f.name.rsplit(".", 1)[-1] for f in _ALL_FIELDS if f.kind == "float")


class FormErrors(Exception):
    """Field errors found while reading a form (before any service is called)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def form_text(form: FormData, name: str) -> str:
    """A text field of a submitted form, trimmed; empty when it is missing or a file."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _convert(name: str, raw: str, field: str, errors: list[FieldError]) -> Any:
    if name in INTEGERS:
        if not raw.isdigit():
            errors.append(FieldError(field, "must be a whole number"))
            return None
        return int(raw)
    if name in NUMBERS:
        try:
            return float(raw)
        except ValueError:
            errors.append(FieldError(field, "must be a number"))
            return None
    return raw


def _read(
    form: FormData,
    names: Iterable[str],
    *,
    prefix: str,
    editing: bool,
    errors: list[FieldError],
) -> dict[str, Any]:
    """Given fields as API values: blank secrets are left out (they keep the stored one),
    other blank fields are left out on create and cleared (None) on edit."""
    out: dict[str, Any] = {}
    for name in names:
        field = f"{prefix}{name}"
        raw = form_text(form, field) if name not in SECRETS else str(form.get(field) or "")
        if not raw:
            if editing and name not in SECRETS and name not in KEEP_WHEN_BLANK:
                out[name] = None
            continue
        out[name] = _convert(name, raw, field, errors)
    return out


def _options(text: str, errors: list[FieldError]) -> dict[str, str]:
    options: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            errors.append(FieldError("options", f"line {number} must read key=value"))
            continue
        options[key.strip()] = value.strip()
    return options


def server_fields(form: FormData, *, editing: bool) -> dict[str, Any]:
    """The API fields of the mail server dialog; :class:`FormErrors` for unreadable ones."""
    errors: list[FieldError] = []
    engine = form_text(form, "engine") or "smtp"
    names = SERVER_COMMON + SERVER_BY_ENGINE.get(engine, ())
    fields = _read(form, names, prefix="", editing=editing, errors=errors)
    fields["engine"] = engine
    for flag in SERVER_FLAGS.get(engine, ()):
        fields[flag] = form.get(flag) is not None
    fields["is_default"] = form.get("is_default") is not None
    fields["stages"] = [s for s in form.getlist("stages") if isinstance(s, str) and s]
    fallback = form_text(form, "fallback_server_id")
    if fallback or editing:
        fields["fallback_server_id"] = fallback or None
    if engine == "smtp":
        fields["options"] = _options(form_text(form, "options"), errors)
    elif engine == "sendgrid":
        send_path = form_text(form, "send_path").strip()
        fields["options"] = {"send_path": send_path} if send_path else {}
    oauth_names = OAUTH_BY_ENGINE.get(engine, ())
    wants_oauth = engine == "msgraph" or (engine == "smtp" and fields.get("auth") == "xoauth2")
    if oauth_names and wants_oauth:
        oauth = _read(form, oauth_names, prefix="oauth.", editing=False, errors=errors)
        if engine == "msgraph":
            oauth["provider"] = "microsoft"
        fields["oauth"] = oauth
    if errors:
        raise FormErrors(errors)
    return fields


def account_fields(form: FormData, *, editing: bool) -> dict[str, Any]:
    """The API fields of the email account dialog."""
    errors: list[FieldError] = []
    names = ("address", "display_name", "description", "reply_to", "mail_server_id")
    fields = _read(form, names, prefix="", editing=editing, errors=errors)
    fields["is_default"] = form.get("is_default") is not None
    imap_names = tuple(k for k, f in IMAP.items() if f.kind != "object")
    imap = _read(form, imap_names, prefix="imap.", editing=False, errors=errors)
    if imap.get("auth") == "xoauth2":
        imap["oauth"] = _read(form, IMAP_OAUTH, prefix="imap.oauth.", editing=False, errors=errors)
    if imap.get("host"):
        imap.setdefault("ca_certificates", None)  # blank clears the stored certificates
        imap.setdefault("ca_keystore", None)  # and "none" the stored keystore
        fields["imap"] = imap
    elif editing:
        fields["imap"] = None
    keystore = form_text(form, "smime.keystore_id")
    if keystore:
        fields["smime"] = {"keystore_id": keystore, "alias": form_text(form, "smime.alias") or None}
    elif editing:
        fields["smime"] = None
    if errors:
        raise FormErrors(errors)
    return fields


def ca_keystore_options(keystores: Iterable[Any]) -> list[tuple[str, str]]:
    """The choices of a ``ca_keystore`` select: none, then the tenant's ``ca`` keystores by
    name (the value the API takes)."""
    return [("", "None (the certificates above, or the system's only)")] + [
        (k.name, k.name) for k in keystores if k.kind == "ca"
    ]


def lines(text: str) -> list[str]:
    """Addresses typed one per line (commas and semicolons separate too)."""
    for sep in (",", ";"):
        text = text.replace(sep, "\n")
    return [line.strip() for line in text.splitlines() if line.strip()]


def validated(model: type[BaseModel], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` checked by the API's request model; the fields that were given."""
    try:
        return model.model_validate(dict(fields)).model_dump(exclude_unset=True)
    except ValidationError as exc:
        errors = []
        for item in exc.errors():
            loc = [str(p) for p in item.get("loc", ()) if not isinstance(p, int)]
            message = str(item.get("msg", "is invalid"))
            if item.get("type") == "extra_forbidden":
                message = "is not a known field"
            errors.append(FieldError(".".join(loc) or "form", message))
        raise FormErrors(errors) from exc


def form_problem(exc: RequestError | FormErrors) -> dict[str, Any]:
    """What a form page shows for ``exc``: its ``errors`` by field, the ``message`` for the
    whole form and the response ``status`` (422 for the form's own checks)."""
    errors, message = field_messages(exc)
    status = exc.status if isinstance(exc, RequestError) else 422
    return {"errors": errors, "message": message, "status": status}


def field_messages(exc: RequestError | FormErrors) -> tuple[dict[str, str], str]:
    """Messages by field name (the first per field) and the message for the whole form."""
    by_field: dict[str, str] = {}
    for error in exc.errors:
        name = error.field.split("[", 1)[0]
        if name == "options.send_path":  # SendGrid's own field
            by_field.setdefault("send_path", error.message)
            continue
        if name.startswith("options."):  # one text area holds every option
            by_field.setdefault("options", f"{name.split('.', 1)[1]}: {error.message}")
            continue
        by_field.setdefault(name, error.message)
    if isinstance(exc, FormErrors):
        return by_field, "Some fields need attention."
    if isinstance(exc, ValidationFailed) and exc.errors:
        return by_field, "Some fields need attention."
    return by_field, exc.detail
