"""The API models, the configuration file, the UI form, the service and the SMTP engine all
follow the one server schema (domain/server_schema.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from mailgate.domain import server_schema as schema
from mailgate.engines.config import ServerConfig
from mailgate.engines.smtp.settings import SessionSettings
from mailgate.errors import ConfigurationError
from mailgate.services import config_file
from mailgate.services import servers as server_service
from mailgate.web.api import schemas as api
from mailgate.web.ui import forms


def _bounds(model: type[BaseModel], name: str) -> dict[str, Any]:
    props = model.model_json_schema()["properties"][name]
    found: dict[str, Any] = {}
    for option in [props, *props.get("anyOf", [])]:
        for key in ("maxLength", "minimum", "maximum", "exclusiveMinimum"):
            if key in option:
                found[key] = option[key]
    return found


def _expected(spec: schema.FieldSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.kind == "text" and spec.max_length is not None:
        out["maxLength"] = spec.max_length
    if spec.minimum is not None:
        out["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    return out


@pytest.mark.parametrize("model", [api.MailServerIn, api.MailServerPatch])
def test_api_server_models_have_the_schema_fields_and_bounds(model: type[BaseModel]) -> None:
    assert set(model.model_fields) == set(schema.SERVER)
    for name, spec in schema.SERVER.items():
        got = _bounds(model, name)
        for key, value in _expected(spec).items():
            assert got.get(key) == value, (model.__name__, name, key)


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (api.OAuthIn, schema.OAUTH),
        (api.ImapIn, schema.IMAP),
        (api.ImapOAuthIn, schema.IMAP_OAUTH),
    ],
)
def test_api_nested_models_follow_the_schema(
    model: type[BaseModel], fields: dict[str, schema.FieldSpec]
) -> None:
    assert set(model.model_fields) == set(fields)
    for name, spec in fields.items():
        for key, value in _expected(spec).items():
            assert _bounds(model, name).get(key) == value, (model.__name__, name, key)


def test_the_config_file_knows_exactly_the_schema_fields() -> None:
    file_names = set(config_file._SERVER) | set(config_file._SERVER_SECRETS)
    schema_names = set(schema.SERVER) - {"fallback_server_id"} | {"fallback_server"}
    assert file_names == schema_names
    assert set(config_file.OAUTH) | set(config_file._OAUTH_SECRETS) == set(schema.OAUTH)
    assert set(config_file._IMAP) | {"password"} == set(schema.IMAP)
    assert set(config_file.IMAP_OAUTH) | set(config_file.IMAP_OAUTH_SECRETS) == set(
        schema.IMAP_OAUTH
    )


def test_the_service_defaults_and_secrets_come_from_the_schema() -> None:
    for name, value in server_service.DEFAULTS.items():
        assert schema.SERVER[name].default == value
    assert server_service.SECRET_FIELDS == schema.SERVER_SECRETS


def test_the_form_reads_numbers_and_secrets_as_the_schema_declares() -> None:
    assert {"port", "max_connections", "rate_limit_per_minute"} <= forms.INTEGERS
    assert {"timeout_seconds"} == forms.NUMBERS
    assert {"password", "api_key", "client_secret"} <= forms.SECRETS


GOOD_OPTIONS = {
    "ehlo_name": "mx.acme.example",
    "disable_auth_plain": "yes",
    "disable_pipelining": "off",
    "disable_chunking": "no",
    "connect_timeout": "5",
    "greeting_timeout": "6.5",
    "idle_timeout": "40",
    "max_messages_per_connection": "50",
}


def test_every_known_option_is_one_the_engine_reads() -> None:
    # The SMTP engine reads these; send_path is the SendGrid engine's
    # (tests/engines/test_sendgrid_send_path.py).
    assert set(GOOD_OPTIONS) == {k for k, o in schema.OPTIONS.items() if not o.engines}
    assert {k for k, o in schema.OPTIONS.items() if o.engines} == {"send_path"}
    assert schema.option_problems(GOOD_OPTIONS) == []
    settings = SessionSettings.from_config(
        ServerConfig(key="k", host="smtp.example.com", options=GOOD_OPTIONS)
    )
    assert settings.ehlo_name == "mx.acme.example" and settings.login_only
    assert settings.connect_timeout == 5 and settings.max_messages_per_connection == 50


@pytest.mark.parametrize(
    "options",
    [
        {"ehlo_name": "relay_01.corp"},
        {"disable_auth_plain": "maybe"},
        {"idle_timeout": "-1"},
        {"connect_timeout": "soon"},
    ],
)
def test_options_the_schema_refuses_are_ones_the_engine_cannot_build(
    options: dict[str, str],
) -> None:
    assert schema.option_problems(options)
    with pytest.raises(ConfigurationError):
        SessionSettings.from_config(ServerConfig(key="k", host="smtp.example.com", options=options))


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("smtp.example.com", True),
        ("smtp.example.com.", True),
        ("bücher.example", True),
        ("10.0.0.1", True),
        ("::1", True),
        ("not a host!!", False),
        ("smtp://mail.example.com:587", False),
        ("mail.example.com:587", False),
        ("[::1]", False),
        ("x" * 64 + ".example.com", False),
    ],
)
def test_host_rule(host: str, ok: bool) -> None:
    assert (schema.host_problem(host) is None) is ok


def test_secret_bound_fields_include_every_destination_and_trust_setting() -> None:
    assert {
        "host",
        "port",
        "username",
        "security",
        "verify_certificate",
        "ca_certificates",
        "ca_keystore",
        "api_base_url",
        "oauth.token_url",
    } <= set(schema.SERVER_SECRET_BOUND)
    assert set(schema.IMAP_SECRET_BOUND) == {
        "host",
        "port",
        "security",
        "username",
        "ca_certificates",
        "ca_keystore",
    }
    assert set(schema.IMAP_OAUTH_SECRET_BOUND) == {"provider", "tenant_id", "token_url"}


def test_field_problems_name_the_rule() -> None:
    assert schema.SERVER["port"].problem(0) == "must be between 1 and 65535"
    assert schema.SERVER["port"].problem(True) == "must be a number"
    assert schema.SERVER["port"].problem(None) == "must not be null"
    assert schema.SERVER["timeout_seconds"].problem(0) == "must be more than 0 and at most 600"
    assert schema.SERVER["host"].problem("a\x85b") == "must not contain control characters"
    assert schema.SERVER["ca_certificates"].problem("line\nline") is None
    assert schema.SERVER["provider"].problem(None) is None


def test_changed_secret_bound_compares_nested_oauth_and_enum_values() -> None:
    old = {"host": "h", "security": "tls", "oauth": {"token_url": "https://a/t"}}
    assert schema.changed_secret_bound(old, {**old}) == []
    new = {**old, "oauth": {"token_url": "https://b/t"}}
    assert schema.changed_secret_bound(old, new) == ["oauth.token_url"]
    assert schema.changed_secret_bound(old, {**old, "verify_certificate": False}) == [
        "verify_certificate"
    ]
