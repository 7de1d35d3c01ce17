"""CodeStream's emailDeliveryService read as Mailgate mail servers (pure: no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailgate.services import codestream_import as cs
from mailgate.services.config_file import ConfigFileError, parse

SAMPLES = Path(__file__).parent / "codestream"


def load(name: str) -> dict[str, Any]:
    return cs.read_file(SAMPLES / name)


def servers(imported: cs.Imported) -> dict[str, Any]:
    return dict(imported.document["tenants"]["acme"]["mail_servers"])


def translate(doc: dict[str, Any], **kw: Any) -> cs.Imported:
    return cs.translate(doc, tenant="acme", tenant_name="Acme Corp", **kw)


def section(**smtp: Any) -> dict[str, Any]:
    return {"emailDeliveryService": {"NodeMailer": smtp}}


def test_the_documentation_snippet_with_comments_is_read() -> None:
    """The seed's Gmail snippet: // comments, a trailing comma, port as a string."""
    imported = translate(load("gmail.json"))
    smtp = servers(imported)["codestream-smtp"]
    assert smtp == {
        "engine": "smtp",
        "provider": "gmail",
        "auth": "password",
        "username": "codestream@acme.example",
        "password": {"env": "MAILGATE_SECRET_ACME_CODESTREAM_SMTP_PASSWORD"},
        "is_default": True,
    }
    assert imported.secret_values == {
        "MAILGATE_SECRET_ACME_CODESTREAM_SMTP_PASSWORD": "gmail-app-Pa55word-canary"
    }
    (ref,) = imported.secrets
    assert (ref.server, ref.field, ref.source) == (
        "codestream-smtp",
        "password",
        "emailDeliveryService.NodeMailer.password",
    )
    # NodeMailer lets the service decide: the file's host/port/secure are reported, not used.
    assert any("host, port, secure ignored" in n for n in imported.notes)
    # The other sections (apiServer, broadcastEngine, ...) and their secrets are not read.
    assert "broadcaster" not in json.dumps(imported.document)
    # The secret is nowhere in the document; parsing it resolves the reference.
    assert "gmail-app-Pa55word-canary" not in json.dumps(imported.document)
    spec = parse(imported.document, environ=imported.secret_values, base_dir=SAMPLES)
    server = spec["acme"].servers["codestream-smtp"]  # type: ignore[index]
    assert (server.values["host"], server.values["port"], server.values["security"]) == (
        "smtp.gmail.com",
        587,
        "starttls",
    )
    assert server.secrets["password"].value == "gmail-app-Pa55word-canary"


def test_relay_with_auth_object_port_string_and_tuning() -> None:
    imported = translate(load("relay.json"))
    smtp = servers(imported)["codestream-smtp"]
    assert smtp["host"] == "relay.acme.example"
    assert smtp["port"] == 2525  # "2525" in the file
    assert smtp["security"] == "starttls"  # requireTLS
    assert smtp["username"] == "codestream"
    assert smtp["password"] == {"env": "MAILGATE_SECRET_ACME_CODESTREAM_SMTP_PASSWORD"}
    assert smtp["options"] == {"ehlo_name": "codestream.acme.example", "connect_timeout": "5"}
    assert smtp["timeout_seconds"] == 20
    assert imported.secrets[0].source == "emailDeliveryService.NodeMailer.auth.pass"
    assert not any("STARTTLS only when" in n for n in imported.notes)
    parse(imported.document, environ=imported.secret_values, base_dir=SAMPLES)


def test_sendgrid_with_the_default_url() -> None:
    imported = translate(load("sendgrid.json"))
    assert servers(imported) == {
        "codestream-sendgrid": {
            "engine": "sendgrid",
            "api_key": {"env": "MAILGATE_SECRET_ACME_CODESTREAM_SENDGRID_API_KEY"},
            "is_default": True,
        }
    }
    assert imported.secret_values["MAILGATE_SECRET_ACME_CODESTREAM_SENDGRID_API_KEY"] == (
        "SG.codestream-canary-key.Zx81"
    )


def test_disabled_sendgrid_is_imported_but_not_the_default() -> None:
    imported = translate(load("both.json"))
    found = servers(imported)
    assert found["codestream-sendgrid"]["is_default"] is False
    assert found["codestream-sendgrid"]["options"] == {"send_path": "/relay/v3/mail/send"}
    assert found["codestream-smtp"]["is_default"] is True
    assert found["codestream-smtp"]["security"] == "starttls"
    assert found["codestream-smtp"]["auth"] == "none"
    assert imported.default == "codestream-smtp"
    assert any("sendgrid is disabled" in n for n in imported.notes)
    assert any("STARTTLS only when the server offered it" in n for n in imported.notes)
    parse(imported.document, environ=imported.secret_values, base_dir=SAMPLES)


def test_both_enabled_sendgrid_wins_like_codestream_unless_selected() -> None:
    doc = load("both.json")
    del doc["emailDeliveryService"]["sendgrid"]["disabled"]
    assert translate(doc).default == "codestream-sendgrid"
    doc["emailDeliveryService"]["selected"] = "NodeMailer"
    assert translate(doc).default == "codestream-smtp"
    assert translate(doc, make_default=False).default == "codestream-smtp"
    assert not any(s["is_default"] for s in servers(translate(doc, make_default=False)).values())


def test_sendgrid_full_url_becomes_base_and_path() -> None:
    doc = {
        "emailDeliveryService": {
            "sendgrid": {"apiKey": "k", "url": "https://sg.acme.example/proxy/v3/mail/send"}
        }
    }
    server = servers(translate(doc))["codestream-sendgrid"]
    assert server["api_base_url"] == "https://sg.acme.example"
    assert server["options"] == {"send_path": "/proxy/v3/mail/send"}


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        (
            {"emailDeliveryService": {"NodeMailer": {"service": "Hotmale"}}},
            "NodeMailer.service",
            "unknown service 'Hotmale'",
        ),
        (section(host="relay.acme.example", port="five"), "NodeMailer.port", "port number"),
        (section(host="relay.acme.example", port="70000"), "NodeMailer.port", "65535"),
        (section(port="587"), "NodeMailer.host", "is required"),
        (section(host="smtp://relay.acme.example"), "NodeMailer.host", "scheme"),
        (section(host="relay.acme.example", secure="maybe"), "NodeMailer.secure", "true or false"),
        (section(host="relay.acme.example", username="u"), "NodeMailer.password", "is required"),
        (
            section(host="r.acme.example", auth={"user": "u", "pass": ""}),
            "NodeMailer.auth.pass",
            "is required",
        ),
        (
            section(host="r.acme.example", auth={"type": "OAuth2", "user": "u"}),
            "NodeMailer.auth",
            "OAuth2",
        ),
        (
            section(host="r.acme.example", ignoreTLS=True, username="u", password="p"),
            "NodeMailer.ignoreTLS",
            "unencrypted",
        ),
        (section(host="r.acme.example", maxConnections=0), "NodeMailer.maxConnections", "1 to 100"),
        (section(host="r.acme.example", name="bad_name"), "NodeMailer.name", "domain name"),
        (
            {"emailDeliveryService": {"sendgrid": {"url": "/v3/mail/send"}}},
            "sendgrid.apiKey",
            "is required",
        ),
        (
            {"emailDeliveryService": {"sendgrid": {"apiKey": "k", "url": "v3/mail/send"}}},
            "sendgrid.url",
            "single /",
        ),
        (
            {
                "emailDeliveryService": {
                    "sendgrid": {"apiKey": "k", "url": "https://sg.example/v3?x=1"}
                }
            },
            "sendgrid.url",
            "query",
        ),
        (
            {"emailDeliveryService": {"sendgrid": {"apiKey": "k"}, "selected": "ses"}},
            "selected",
            "must be",
        ),
        ({"emailDeliveryService": {"sendinblue": {}}}, "emailDeliveryService", "neither"),
        ({"emailDeliveryService": []}, "emailDeliveryService", "object"),
    ],
)
def test_bad_values_name_the_field_in_the_codestream_file(
    doc: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigFileError) as caught:
        translate(doc)
    where = caught.value.path
    assert where.endswith(path) and where.startswith("emailDeliveryService"), where
    assert words in str(caught.value)


def test_unknown_service_lists_the_known_ones() -> None:
    with pytest.raises(ConfigFileError) as caught:
        translate(load("unknown-service.json"))
    message = str(caught.value)
    assert "emailDeliveryService.NodeMailer.service" in message
    assert "gmail" in message and "office365" in message and "or give host and port" in message
    assert "unknown-service-canary" not in message


def test_missing_section_is_named() -> None:
    with pytest.raises(ConfigFileError) as caught:
        translate(load("no-section.json"))
    assert caught.value.path == "emailDeliveryService"
    assert "no emailDeliveryService section" in str(caught.value)


@pytest.mark.parametrize(
    ("service", "preset"),
    [
        ("Gmail", "gmail"),
        ("Office365", "microsoft365"),
        ("SendGrid", "sendgrid"),
        ("Outlook.com", "outlook"),
        ("SES-EU-WEST-1", "ses-eu-west-1"),
        ("Yahoo", "yahoo"),
    ],
)
def test_well_known_services_map_to_presets(service: str, preset: str) -> None:
    imported = translate(section(service=service, username="u@acme.example", password="p"))
    assert servers(imported)["codestream-smtp"]["provider"] == preset
    parse(imported.document, environ=imported.secret_values, base_dir=SAMPLES)


def test_secure_true_is_implicit_tls_and_ignore_tls_is_none() -> None:
    tls = servers(translate(section(host="r.acme.example", secure=True)))["codestream-smtp"]
    assert (tls["security"], tls["port"]) == ("tls", 465)
    plain = servers(translate(section(host="r.acme.example", port=2525, ignoreTLS=True)))
    assert plain["codestream-smtp"]["security"] == "none"
    imported = translate(section(host="r.acme.example", port="587", secure=True))
    assert any("tls_on_plain_port" in n for n in imported.notes)


def test_tls_options() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    tls = {"rejectUnauthorized": False, "ca": [pem], "minVersion": "TLSv1.3", "ciphers": "x"}
    imported = translate(section(host="r.acme.example", tls=tls))
    server = servers(imported)["codestream-smtp"]
    assert server["verify_certificate"] is False
    assert server["ca_certificates"] == pem + "\n"
    assert server["min_tls_version"] == "1.3"
    assert any("ciphers ignored" in n for n in imported.notes)


def test_strings_keep_comment_marks_and_commas() -> None:
    doc = cs.loads('{"a": "http://x/*y*/, }", // c\n "b": [1, 2,],}')
    assert doc == {"a": "http://x/*y*/, }", "b": [1, 2]}
    with pytest.raises(ConfigFileError, match="not valid JSON"):
        cs.loads('{"a": }')
