"""An email account's IMAP settings from the API: plain values, sealed secrets, checks.

``imap.auth`` is ``password`` (LOGIN, the default) or ``xoauth2`` (AUTHENTICATE XOAUTH2
with an access token from ``imap.oauth``: provider ``google`` with a service account, or
``microsoft`` with an app's client credentials). ``imap.ca_certificates`` (PEM) are trusted
for this inbox only; ``imap.ca_keystore`` names a ``ca`` keystore of the tenant to trust
instead (:mod:`mailgate.services.trust`). Write-only values (``password``,
``oauth.client_secret``, ``oauth.service_account_json``) are sealed with the account's
secrets; the rest is plain.

An ``imap`` object that leaves ``auth`` out keeps the stored sign-in (``auth`` and
``oauth``), and one that leaves ``ca_certificates`` or ``ca_keystore`` out keeps the
stored one, so a client that does not know these fields (an older script, a configuration
file) cannot switch an OAuth inbox back to passwords by editing its host or folder.

A stored secret is never sent anywhere it was not entered for. The fields that decide
where it goes are declared "secret-bound" in :mod:`mailgate.domain.server_schema`: changing
the server or what it is trusted with (``host``, ``port``, ``security``, ``username``,
``ca_certificates``, ``ca_keystore``) needs the password again, and changing where tokens
come from (``oauth.provider``, ``oauth.tenant_id``, ``oauth.token_url``) or trusting other
certificates for the token endpoint (new ``ca_certificates`` or ``ca_keystore``) needs the
OAuth secret again.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, MutableMapping
from typing import Any

from mailgate.domain.inbound import IMAP_SECRETS
from mailgate.domain.model import ImapSettings
from mailgate.domain.server_schema import (
    IMAP_OAUTH,
    IMAP_OAUTH_SECRET_BOUND,
    IMAP_SECRET_BOUND,
    host_problem,
)
from mailgate.engines.oauth.jwt import ServiceAccount
from mailgate.errors import ConfigurationError, ValidationFailed
from mailgate.net.urls import checked_url

OAUTH_PLAIN = tuple(k for k, f in IMAP_OAUTH.items() if not f.secret)
#: OAuth secret fields -> their keys in the account's sealed secrets.
_OAUTH_SECRETS = {k: str(f.sealed_as) for k, f in IMAP_OAUTH.items() if f.secret}


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
        imap.setdefault("ca_keystore", stored.ca_keystore)
    given: dict[str, str] = {}
    password = imap.pop("password", None)
    if password:
        given["imap_password"] = password
    imap.pop("password_set", None)
    if not imap.get("host"):
        raise ValidationFailed.field("imap.host", "is required when imap is given")
    problem = host_problem(str(imap["host"]))
    if problem is not None:
        raise ValidationFailed.field("imap.host", problem)
    if imap.get("security", "tls") not in ("tls", "starttls"):
        raise ValidationFailed.field("imap.security", "must be tls or starttls")
    imap["auth"] = imap.get("auth") or "password"
    if imap["auth"] not in ("password", "xoauth2"):
        raise ValidationFailed.field("imap.auth", "must be password or xoauth2")
    imap["ca_certificates"] = _ca(imap.get("ca_certificates"))
    imap["ca_keystore"] = imap.get("ca_keystore") or None
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
        _require_imap_password_again(current, imap)
    oauth = imap.get("oauth")
    if oauth is None:
        for secret in _OAUTH_SECRETS.values():
            secrets.pop(secret, None)
    else:
        for name, secret in _OAUTH_SECRETS.items():
            if secret not in given and secret in secrets:
                _require_oauth_secret_again(current, imap, name)
    secrets.update(given)
    if imap.get("auth") == "xoauth2":
        check_oauth(oauth or {}, secrets)


def _require_imap_password_again(stored: ImapSettings | None, new: Mapping[str, Any]) -> None:
    """The same rule as for mail servers: a stored password never goes to a server (or
    with trust in certificates) it was not entered for."""
    defaults = ImapSettings(host="")
    current = stored or defaults
    changed = [
        name
        for name in IMAP_SECRET_BOUND
        if new.get(name, getattr(defaults, name)) != getattr(current, name)
    ]
    if changed:
        raise ValidationFailed.field(
            "imap.password",
            f"changing imap {', '.join(changed)} requires the password again, so a stored "
            "password is never sent to a server it was not entered for",
        )


def _require_oauth_secret_again(current: ImapSettings, new: Mapping[str, Any], name: str) -> None:
    """A stored OAuth secret (``name``) never goes to a token endpoint it was not entered
    for, nor to one verified with other certificates (clearing them, which leaves only the
    system's trust store, is allowed)."""
    stored_oauth = current.oauth or {}
    oauth = new.get("oauth") or {}
    changed = [f"oauth.{k}" for k in IMAP_OAUTH_SECRET_BOUND if oauth.get(k) != stored_oauth.get(k)]
    for trust in ("ca_certificates", "ca_keystore"):
        value = new.get(trust)
        if value and value != getattr(current, trust):
            changed.append(trust)
    if changed:
        raise ValidationFailed.field(
            f"imap.oauth.{name}",
            f"changing imap {', '.join(changed)} requires the {name} again, so a stored "
            "secret is never sent to a token endpoint it was not entered for",
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
