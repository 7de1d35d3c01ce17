"""Provider presets: the host, port and security of well-known mail services.

Choosing a preset (or typing a sender address whose domain belongs to one) fills a mail
server's ``host``, ``port``, ``security`` and ``auth`` (SPEC.md section 3, "Provider presets").
This module is data plus pure look-ups: no IO, no network, standard library only.

Every SMTP preset uses a submission port with mandatory TLS: 587 with STARTTLS (RFC 6409,
RFC 3207) or 465 with implicit TLS (RFC 8314 section 3.3). Port 25 is never a preset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

from mailgate.domain.servers import AuthKind, Engine, Security


@dataclass(frozen=True, slots=True)
class Provider:
    """One preset.

    ``domains`` are the address domains that belong to the provider, lower case; an entry
    starting with a dot (``.onmicrosoft.com``) matches every subdomain of it. HTTP engines
    (``sendgrid``, ``msgraph``) give the API host on port 443; they authenticate with an API
    key or OAuth rather than SMTP AUTH.
    """

    key: str
    name: str
    engine: Engine
    host: str
    port: int
    security: Security
    auth: AuthKind
    domains: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of ``GET /api/v1/providers`` (API.md), plus ``domains``."""
        return {
            "key": self.key,
            "name": self.name,
            "engine": self.engine.value,
            "host": self.host,
            "port": self.port,
            "security": self.security.value,
            "auth": self.auth.value,
            "domains": list(self.domains),
        }


def _smtp(
    key: str,
    name: str,
    host: str,
    port: int,
    *,
    security: Security = Security.STARTTLS,
    auth: AuthKind = AuthKind.PASSWORD,
    domains: Iterable[str] = (),
) -> Provider:
    return Provider(key, name, Engine.SMTP, host, port, security, auth, tuple(domains))


#: Amazon SES regions with an SMTP interface, and their display names. The SMTP endpoint of
#: a region is ``email-smtp.<region>.amazonaws.com`` (AWS General Reference, "Amazon Simple
#: Email Service endpoints and quotas").
SES_REGIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        "us-east-1": "US East (N. Virginia)",
        "us-east-2": "US East (Ohio)",
        "us-west-1": "US West (N. California)",
        "us-west-2": "US West (Oregon)",
        "ca-central-1": "Canada (Central)",
        "sa-east-1": "South America (São Paulo)",
        "eu-west-1": "Europe (Ireland)",
        "eu-west-2": "Europe (London)",
        "eu-west-3": "Europe (Paris)",
        "eu-central-1": "Europe (Frankfurt)",
        "eu-south-1": "Europe (Milan)",
        "eu-north-1": "Europe (Stockholm)",
        "ap-south-1": "Asia Pacific (Mumbai)",
        "ap-northeast-1": "Asia Pacific (Tokyo)",
        "ap-northeast-2": "Asia Pacific (Seoul)",
        "ap-northeast-3": "Asia Pacific (Osaka)",
        "ap-southeast-1": "Asia Pacific (Singapore)",
        "ap-southeast-2": "Asia Pacific (Sydney)",
        "af-south-1": "Africa (Cape Town)",
        "me-south-1": "Middle East (Bahrain)",
        "us-gov-west-1": "AWS GovCloud (US-West)",
    }
)


def _ses_presets() -> list[Provider]:
    return [
        _smtp(f"ses-{region}", f"Amazon SES — {label}", f"email-smtp.{region}.amazonaws.com", 587)
        for region, label in SES_REGIONS.items()
    ]


_OUTLOOK_DOMAINS = (
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "passport.com",
    "outlook.co.uk",
    "outlook.de",
    "outlook.fr",
    "outlook.es",
    "outlook.it",
    "hotmail.co.uk",
    "hotmail.de",
    "hotmail.fr",
    "hotmail.es",
    "hotmail.it",
    "hotmail.nl",
    "live.co.uk",
    "live.de",
    "live.fr",
    "live.nl",
    "live.ca",
)

_YAHOO_DOMAINS = (
    "yahoo.com",
    "ymail.com",
    "rocketmail.com",
    "yahoo.co.uk",
    "yahoo.ca",
    "yahoo.com.au",
    "yahoo.co.in",
    "yahoo.de",
    "yahoo.fr",
    "yahoo.es",
    "yahoo.it",
    "yahoo.com.br",
    "yahoo.com.mx",
)

_FASTMAIL_DOMAINS = (
    "fastmail.com",
    "fastmail.fm",
    "fastmail.net",
    "fastmail.org",
    "fastmail.to",
    "fastmail.us",
    "fastmail.co.uk",
    "fastmail.de",
    "messagingengine.com",
    "sent.com",
)

# Microsoft is retiring basic authentication for SMTP AUTH on Exchange Online and
# Outlook.com, so both presets default to OAuth (XOAUTH2).
_PRESETS: tuple[Provider, ...] = (
    _smtp(
        "gmail",
        "Gmail / Google Workspace",
        "smtp.gmail.com",
        587,
        domains=("gmail.com", "googlemail.com"),
    ),
    _smtp(
        "microsoft365",
        "Microsoft 365 (Exchange Online)",
        "smtp.office365.com",
        587,
        auth=AuthKind.XOAUTH2,
        domains=(".onmicrosoft.com",),
    ),
    _smtp(
        "outlook",
        "Outlook.com / Hotmail",
        "smtp-mail.outlook.com",
        587,
        auth=AuthKind.XOAUTH2,
        domains=_OUTLOOK_DOMAINS,
    ),
    _smtp(
        "yahoo",
        "Yahoo Mail",
        "smtp.mail.yahoo.com",
        465,
        security=Security.TLS,
        domains=_YAHOO_DOMAINS,
    ),
    _smtp("aol", "AOL Mail", "smtp.aol.com", 465, security=Security.TLS, domains=("aol.com",)),
    _smtp(
        "icloud",
        "iCloud Mail",
        "smtp.mail.me.com",
        587,
        domains=("icloud.com", "me.com", "mac.com"),
    ),
    _smtp(
        "zoho",
        "Zoho Mail",
        "smtp.zoho.com",
        465,
        security=Security.TLS,
        domains=("zoho.com", "zohomail.com"),
    ),
    _smtp(
        "zoho-eu",
        "Zoho Mail (EU data centre)",
        "smtp.zoho.eu",
        465,
        security=Security.TLS,
        domains=("zoho.eu", "zohomail.eu"),
    ),
    _smtp(
        "fastmail",
        "Fastmail",
        "smtp.fastmail.com",
        465,
        security=Security.TLS,
        domains=_FASTMAIL_DOMAINS,
    ),
    _smtp("gmx", "GMX", "mail.gmx.net", 587, domains=("gmx.net", "gmx.de", "gmx.at", "gmx.ch")),
    _smtp("gmx-com", "GMX (international)", "mail.gmx.com", 587, domains=("gmx.com",)),
    *_ses_presets(),
    _smtp("sendgrid", "SendGrid (SMTP relay)", "smtp.sendgrid.net", 587),
    Provider(
        "sendgrid-api",
        "SendGrid (Web API v3)",
        Engine.SENDGRID,
        "api.sendgrid.com",
        443,
        Security.TLS,
        AuthKind.NONE,
    ),
    Provider(
        "msgraph",
        "Microsoft 365 (Graph API)",
        Engine.MSGRAPH,
        "graph.microsoft.com",
        443,
        Security.TLS,
        AuthKind.XOAUTH2,
    ),
    _smtp("mailgun", "Mailgun (US)", "smtp.mailgun.org", 587),
    _smtp("mailgun-eu", "Mailgun (EU)", "smtp.eu.mailgun.org", 587),
    _smtp("postmark", "Postmark", "smtp.postmarkapp.com", 587),
    _smtp("brevo", "Brevo (formerly Sendinblue)", "smtp-relay.brevo.com", 587),
    _smtp("mailjet", "Mailjet", "in-v3.mailjet.com", 587),
)

_BY_KEY: MappingProxyType[str, Provider] = MappingProxyType({p.key: p for p in _PRESETS})

_BY_DOMAIN: MappingProxyType[str, Provider] = MappingProxyType(
    {domain: p for p in _PRESETS for domain in p.domains if not domain.startswith(".")}
)

_BY_SUFFIX: tuple[tuple[str, Provider], ...] = tuple(
    (domain, p) for p in _PRESETS for domain in p.domains if domain.startswith(".")
)


def list_providers() -> tuple[Provider, ...]:
    """Every preset, in display order (personal mailboxes first, then relay services)."""
    return _PRESETS


def get_provider(key: str) -> Provider | None:
    """The preset named ``key`` (exact, lower case), or ``None``."""
    return _BY_KEY.get(key)


def resolve_email(address: str) -> Provider | None:
    """The preset that serves ``address``, judged by its domain, case-insensitively.

    Only the part after the last ``@`` counts, and a trailing root dot is ignored. Returns
    ``None`` for an address without a domain or whose domain belongs to no preset (a custom
    Google Workspace or Microsoft 365 domain cannot be told from its name alone).
    """
    _, at, domain = address.strip().rpartition("@")
    if not at:
        return None
    domain = domain.lower().rstrip(".")
    if not domain:
        return None
    found = _BY_DOMAIN.get(domain)
    if found is not None:
        return found
    for suffix, provider in _BY_SUFFIX:
        if domain.endswith(suffix) and len(domain) > len(suffix):
            return provider
    return None
