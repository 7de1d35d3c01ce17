"""An email account's IMAP settings from the API: plain values, sealed secrets, checks.

``imap.auth`` is ``password`` (LOGIN, the default) or ``xoauth2`` (AUTHENTICATE XOAUTH2
with an access token from ``imap.oauth``: provider ``google`` with a service account, or
``microsoft`` with an app's client credentials). ``imap.ca_certificates`` (PEM) are trusted
for this inbox only. Write-only values (``password``, ``oauth.client_secret``,
``oauth.service_account_json``) are sealed with the account's secrets; the rest is plain.

An ``imap`` object that leaves ``auth`` out keeps the stored sign-in (``auth`` and
``oauth``), and one that leaves ``ca_certificates`` out keeps the stored certificates, so a
client that does not know these fields (an older script, a configuration file) cannot
switch an OAuth inbox back to passwords by editing its host or folder.

A stored secret is never sent anywhere it was not entered for: changing the server
(host, port, security, username) needs the password again, and changing where tokens come
from (provider, tenant, token URL, client id) needs the OAuth secret again.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, MutableMapping
from typing import Any

from mailgate.domain.inbound import IMAP_SECRETS
from mailgate.domain.model import ImapSettings
from mailgate.engines.http_base import checked_url
from mailgate.engines.oauth_jwt import ServiceAccount
from mailgate.errors import ConfigurationError, ValidationFailed

#: Changing any of these sends the stored password somewhere new: it must be given again.
PASSWORD_BOUND = ("host", "port", "security", "username")
#: Changing any of these sends the stored OAuth secret to another token endpoint.
OAUTH_BOUND = ("provider", "tenant_id", "token_url", "client_id")
OAUTH_PLAIN = ("provider", "client_id", "tenant_id", "scope", "token_url", "subject")
_OAUTH_SECRETS = {
    "client_secret": "imap_oauth_client_secret",
    "service_account_json": "imap_oauth_service_account_json",
}


def parse_imap(
    values: Mapping[str, Any] | None, stored: ImapSettings | None = None
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Plain IMAP settings and the new secrets given (by secret name) from the API object
    (``stored``: the account's current settings); a 422 naming the field for a value that
    cannot work."""
    if values is None:
        return None, {}
    imap = dict(values)
    if stored is not None:
        if "auth" not in imap:
            imap["auth"] = stored.auth
            if "oauth" not in imap and stored.oauth:
                imap["oauth"] = dict(stored.oauth)
        imap.setdefault("ca_certificates", stored.ca_certificates)
    given: dict[str, str] = {}
    password = imap.pop("password", None)
    if password:
        given["imap_password"] = password
    imap.pop("password_set", None)
    if not imap.get("host"):
        raise ValidationFailed.field("imap.host", "is required when imap is given")
    if imap.get("security", "tls") not in ("tls", "starttls"):
        raise ValidationFailed.field("imap.security", "must be tls or starttls")
    imap["auth"] = imap.get("auth") or "password"
    if imap["auth"] not in ("password", "xoauth2"):
        raise ValidationFailed.field("imap.auth", "must be password or xoauth2")
    imap["ca_certificates"] = _ca(imap.get("ca_certificates"))
    oauth = imap.get("oauth")
    if oauth is not None:
        oauth = dict(oauth)
        for name, secret in _OAUTH_SECRETS.items():
            value = oauth.pop(name, None)
            if value:
                given[secret] = value
        imap["oauth"] = {k: (oauth.get(k) or None) for k in OAUTH_PLAIN}
    if imap["auth"] == "xoauth2" and imap.get("oauth") is None:
        raise ValidationFailed.field("imap.oauth", "is required when imap.auth is xoauth2")
    return imap, given


def _ca(pem: object) -> str | None:
    if not pem:
        return None
    if not isinstance(pem, str):
        raise ValidationFailed.field("imap.ca_certificates", "must be PEM text")
    try:
        ssl.create_default_context().load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise ValidationFailed.field(
            "imap.ca_certificates", "is not a PEM certificate (or list of certificates)"
        ) from None
    return pem


def merge_secrets(
    stored_imap: ImapSettings | None,
    imap: Mapping[str, Any] | None,
    given: Mapping[str, str],
    secrets: MutableMapping[str, str],
) -> None:
    """Apply new IMAP settings to the account's ``secrets`` (in place) and check that the
    inbox can authenticate with what results."""
    if imap is None:
        for name in IMAP_SECRETS:
            secrets.pop(name, None)
        return
    current = stored_imap or ImapSettings(host="")
    if "imap_password" not in given and "imap_password" in secrets:
        _require_again(current, imap, PASSWORD_BOUND, "imap.password", "password")
    oauth = imap.get("oauth")
    if oauth is None:
        for secret in _OAUTH_SECRETS.values():
            secrets.pop(secret, None)
    else:
        stored_oauth = current.oauth or {}
        for name, secret in _OAUTH_SECRETS.items():
            if secret in given or secret not in secrets:
                continue
            changed = [k for k in OAUTH_BOUND if oauth.get(k) != stored_oauth.get(k)]
            if changed:
                raise ValidationFailed.field(
                    f"imap.oauth.{name}",
                    f"changing imap.oauth {', '.join(changed)} requires the {name} again, so "
                    "a stored secret is never sent to a token endpoint it was not entered for",
                )
    secrets.update(given)
    if imap.get("auth") == "xoauth2":
        check_oauth(oauth or {}, secrets)


def _require_again(
    current: ImapSettings, new: Mapping[str, Any], bound: tuple[str, ...], field: str, what: str
) -> None:
    defaults = ImapSettings(host="")
    changed = [
        name for name in bound if new.get(name, getattr(defaults, name)) != getattr(current, name)
    ]
    if changed:
        raise ValidationFailed.field(
            field,
            f"changing imap {', '.join(changed)} requires the {what} again, so a stored "
            f"{what} is never sent to a server it was not entered for",
        )


def check_oauth(oauth: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
    """A 422 naming the ``imap.oauth`` field that keeps tokens from being fetched."""
    provider = oauth.get("provider")
    if provider not in ("google", "microsoft"):
        raise ValidationFailed.field("imap.oauth.provider", "must be google or microsoft")
    token_url = oauth.get("token_url")
    if token_url:
        try:
            checked_url("inbox", str(token_url), field="imap.oauth.token_url")
        except ConfigurationError as exc:
            message = str(exc).removeprefix("server inbox: imap.oauth.token_url ")
            raise ValidationFailed.field("imap.oauth.token_url", message) from None
    if provider == "google":
        key = secrets.get("imap_oauth_service_account_json")
        if not key:
            raise ValidationFailed.field(
                "imap.oauth.service_account_json",
                "is required for Google (a service account with domain-wide delegation)",
            )
        try:
            ServiceAccount.from_json(key)
        except ConfigurationError as exc:
            message = str(exc).removeprefix("oauth.service_account_json").lstrip(": ")
            raise ValidationFailed.field("imap.oauth.service_account_json", message) from None
        return
    if not oauth.get("client_id"):
        raise ValidationFailed.field("imap.oauth.client_id", "is required for Microsoft")
    if not secrets.get("imap_oauth_client_secret"):
        raise ValidationFailed.field("imap.oauth.client_secret", "is required for Microsoft")
    if not (oauth.get("tenant_id") or token_url):
        raise ValidationFailed.field(
            "imap.oauth.tenant_id", "is required for Microsoft (or give imap.oauth.token_url)"
        )
