"""Provider presets: the table's facts and the look-ups by key and by address."""

from __future__ import annotations

import dataclasses

import pytest

from mailgate.domain.providers import (
    SES_REGIONS,
    Provider,
    get_provider,
    list_providers,
    resolve_email,
)
from mailgate.domain.servers import Engine, Security


@pytest.mark.parametrize(
    ("key", "host", "port", "security"),
    [
        ("gmail", "smtp.gmail.com", 587, Security.STARTTLS),
        ("microsoft365", "smtp.office365.com", 587, Security.STARTTLS),
        ("outlook", "smtp-mail.outlook.com", 587, Security.STARTTLS),
        ("yahoo", "smtp.mail.yahoo.com", 465, Security.TLS),
        ("icloud", "smtp.mail.me.com", 587, Security.STARTTLS),
        ("zoho", "smtp.zoho.com", 465, Security.TLS),
        ("fastmail", "smtp.fastmail.com", 465, Security.TLS),
        ("ses-us-east-1", "email-smtp.us-east-1.amazonaws.com", 587, Security.STARTTLS),
        ("ses-eu-west-1", "email-smtp.eu-west-1.amazonaws.com", 587, Security.STARTTLS),
        ("sendgrid", "smtp.sendgrid.net", 587, Security.STARTTLS),
        ("mailgun", "smtp.mailgun.org", 587, Security.STARTTLS),
        ("postmark", "smtp.postmarkapp.com", 587, Security.STARTTLS),
        ("brevo", "smtp-relay.brevo.com", 587, Security.STARTTLS),
        ("mailjet", "in-v3.mailjet.com", 587, Security.STARTTLS),
    ],
)
def test_preset_facts(key: str, host: str, port: int, security: Security) -> None:
    provider = get_provider(key)
    assert provider is not None
    assert (provider.engine, provider.host, provider.port, provider.security) == (
        Engine.SMTP,
        host,
        port,
        security,
    )


def test_sendgrid_http_engine_preset() -> None:
    provider = get_provider("sendgrid-api")
    assert provider is not None
    assert provider.engine is Engine.SENDGRID
    assert provider.host == "api.sendgrid.com"


def test_every_ses_region_has_a_preset() -> None:
    for region in SES_REGIONS:
        provider = get_provider(f"ses-{region}")
        assert provider is not None
        assert provider.host == f"email-smtp.{region}.amazonaws.com"
        assert provider.port == 587


def test_table_invariants() -> None:
    providers = list_providers()
    keys = [p.key for p in providers]
    assert len(keys) == len(set(keys))
    owners: dict[str, str] = {}
    for provider in providers:
        assert provider.port != 25
        assert provider.key == provider.key.lower()
        if provider.engine is Engine.SMTP:
            expected = {587: Security.STARTTLS, 465: Security.TLS}[provider.port]
            assert provider.security is expected
        for domain in provider.domains:
            assert domain == domain.lower()
            assert domain not in owners, f"{domain} claimed by {owners.get(domain)}"
            owners[domain] = provider.key


def test_provider_is_frozen_and_serialises() -> None:
    provider = get_provider("gmail")
    assert provider is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        provider.port = 25  # type: ignore[misc]
    assert provider.as_dict() == {
        "key": "gmail",
        "name": "Gmail / Google Workspace",
        "engine": "smtp",
        "host": "smtp.gmail.com",
        "port": 587,
        "security": "starttls",
        "auth": "password",
        "domains": ["gmail.com", "googlemail.com"],
    }


def test_get_unknown_provider() -> None:
    assert get_provider("nope") is None
    assert get_provider("GMAIL") is None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("a@gmail.com", "gmail"),
        ("A.B@GoogleMail.COM", "gmail"),
        ("x@outlook.com", "outlook"),
        ("x@hotmail.com", "outlook"),
        ("x@live.com", "outlook"),
        ("x@hotmail.co.uk", "outlook"),
        ("x@contoso.onmicrosoft.com", "microsoft365"),
        ("x@yahoo.com", "yahoo"),
        ("x@ymail.com", "yahoo"),
        ("x@yahoo.co.uk", "yahoo"),
        ("x@icloud.com", "icloud"),
        ("x@me.com", "icloud"),
        ("x@mac.com", "icloud"),
        ("x@zoho.com", "zoho"),
        ("x@fastmail.com", "fastmail"),
        ("x@fastmail.fm", "fastmail"),
        ("x@aol.com", "aol"),
        ("  x@Gmail.com.  ", "gmail"),
        ('"odd@name"@gmail.com', "gmail"),
    ],
)
def test_resolve_email(address: str, key: str) -> None:
    provider = resolve_email(address)
    assert isinstance(provider, Provider)
    assert provider.key == key


@pytest.mark.parametrize(
    "address",
    [
        "someone@acme.test",
        "gmail.com",
        "x@",
        "",
        "x@onmicrosoft.com",
        "x@notgmail.com",
        "x@gmail.com.evil.test",
    ],
)
def test_resolve_email_without_preset(address: str) -> None:
    assert resolve_email(address) is None
