"""The shape of a configuration file: every error names its path; secrets are references."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from mailgate.errors import ConfigurationError
from mailgate.services.config_file import (
    ConfigFileError,
    dumps_document,
    env_name,
    loads_document,
    parse,
    read_document,
)
from tests.config_file.helpers import CANARY, ENV, doc

RELAY = "tenants.acme.mail_servers.relay"


def _error(document: dict[str, Any], env: dict[str, str] | None = None) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as caught:
        parse(document, environ=ENV if env is None else env, base_dir=Path("."))
    return caught.value


def _relay(document: dict[str, Any]) -> dict[str, Any]:
    server: dict[str, Any] = document["tenants"]["acme"]["mail_servers"]["relay"]
    return server


def test_a_valid_document_parses_with_its_secrets_resolved() -> None:
    specs = parse(doc(), environ=ENV, base_dir=Path("."))
    relay = specs["acme"].servers["relay"]  # type: ignore[index]
    assert relay.values["port"] == 587
    assert relay.values["timeout_seconds"] == 20.0
    assert relay.fallback == "backup"
    assert relay.secrets["password"].value == CANARY
    assert CANARY not in repr(relay)
    account = specs["acme"].accounts["noreply@acme.example"]  # type: ignore[index]
    assert account.imap is not None and account.imap["port"] == 993
    assert account.imap_password is not None and account.imap_password.value == "imap-" + CANARY


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        ("port", 70000, f"{RELAY}.port", "must be between 1 and 65535"),
        ("port", "587", f"{RELAY}.port", "must be a whole number"),
        ("port", True, f"{RELAY}.port", "must be a whole number"),
        ("security", "ssl", f"{RELAY}.security", "must be one of starttls, tls, none"),
        ("max_connections", 0, f"{RELAY}.max_connections", "must be between 1 and 100"),
        ("timeout_seconds", 0, f"{RELAY}.timeout_seconds", "more than 0"),
        ("is_default", "yes", f"{RELAY}.is_default", "must be true or false"),
        ("options", {"ehlo_name": "a\r\nb"}, f"{RELAY}.options.ehlo_name", "control characters"),
        ("stages", ["test", "test"], f"{RELAY}.stages[1]", "listed twice"),
        ("colour", "blue", f"{RELAY}.colour", "unknown field"),
        ("provider", "nope", f"{RELAY}.provider", "unknown provider"),
    ],
)
def test_invalid_server_values_name_their_path(
    field: str, value: Any, path: str, message: str
) -> None:
    document = doc()
    _relay(document)[field] = value
    error = _error(document)
    assert error.path == path
    assert message in str(error)
    assert str(error).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (lambda d: d.pop("version"), "version", "must be 1"),
        (lambda d: d.update(extra=1), "extra", "unknown field"),
        (lambda d: d["tenants"]["acme"].pop("name"), "tenants.acme.name", "is required"),
        (
            lambda d: d["tenants"]["acme"]["email_accounts"]["noreply@acme.example"].pop(
                "display_name"
            ),
            "tenants.acme.email_accounts.noreply@acme.example.display_name",
            "is required",
        ),
        (
            lambda d: d["tenants"]["acme"]["email_accounts"].update({"not-an-address": {}}),
            "tenants.acme.email_accounts.not-an-address",
            "",
        ),
        (
            lambda d: d["tenants"]["acme"]["apps"]["billing"]["test_list"].update(
                addresses=["qa@acme.example", "bad address"]
            ),
            "tenants.acme.apps.billing.test_list.addresses[1]",
            "",
        ),
        (
            lambda d: d["tenants"]["acme"]["email_accounts"]["noreply@acme.example"]["imap"].update(
                port=0
            ),
            "tenants.acme.email_accounts.noreply@acme.example.imap.port",
            "between 1 and 65535",
        ),
    ],
)
def test_invalid_documents_name_the_path(change: Any, path: str, message: str) -> None:
    document = doc()
    change(document)
    error = _error(document)
    assert error.path == path
    assert message in error.detail


def test_a_missing_environment_variable_names_the_field_and_the_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "MAILGATE_SECRET_ACME_RELAY_PASSWORD"}
    error = _error(doc(), env)
    assert error.path == f"{RELAY}.password"
    assert "MAILGATE_SECRET_ACME_RELAY_PASSWORD" in error.detail
    assert "is not set" in error.detail


def test_an_empty_environment_variable_counts_as_missing() -> None:
    error = _error(doc(), {**ENV, "MAILGATE_SECRET_ACME_RELAY_PASSWORD": ""})
    assert error.path == f"{RELAY}.password"


def test_a_secret_written_in_the_file_is_refused_with_a_suggested_reference() -> None:
    document = doc()
    _relay(document)["password"] = CANARY
    error = _error(document)
    assert error.path == f"{RELAY}.password"
    assert "never written in the file" in error.detail
    assert "MAILGATE_SECRET_ACME_RELAY_PASSWORD" in error.detail
    assert CANARY not in error.detail


@pytest.mark.parametrize(
    "ref", [{"env": "A", "file": "b"}, {"vault": "x"}, {"env": "1BAD"}, {"env": ""}, ["x"]]
)
def test_malformed_references_are_refused(ref: Any) -> None:
    document = doc()
    _relay(document)["password"] = ref
    assert _error(document).path.startswith(f"{RELAY}.password")


def test_a_file_reference_reads_a_container_secret(tmp_path: Path) -> None:
    (tmp_path / "relay.pw").write_text(CANARY + "\n")
    document = doc()
    _relay(document)["password"] = {"file": "relay.pw"}  # relative to the config file
    specs = parse(document, environ=ENV, base_dir=tmp_path)
    assert specs["acme"].servers["relay"].secrets["password"].value == CANARY  # type: ignore[index]
    _relay(document)["password"] = {"file": str(tmp_path / "missing")}
    error = _error(document)
    assert error.path == f"{RELAY}.password"
    assert "missing" in error.detail


def test_secret_files_must_be_small_regular_utf8_files(tmp_path: Path) -> None:
    document = doc()
    for target, expected in (
        ("/dev/zero", "not a regular file"),
        (str(tmp_path), "not a regular file"),
    ):
        _relay(document)["password"] = {"file": target}
        assert expected in _error(document).detail
    (tmp_path / "huge").write_bytes(b"x" * (64 * 1024 + 1))
    _relay(document)["password"] = {"file": str(tmp_path / "huge")}
    assert "larger than 65536 bytes" in _error(document).detail
    (tmp_path / "binary").write_bytes(b"secret\xff\xfe")
    _relay(document)["password"] = {"file": str(tmp_path / "binary")}
    error = _error(document)
    assert "not UTF-8 text" in error.detail
    assert "0xff" not in error.detail and "position" not in error.detail


def test_toml_and_json_read_alike(tmp_path: Path) -> None:
    toml = tmp_path / "mailgate.toml"
    toml.write_text(
        'version = 1\n[tenants.acme]\nname = "Acme"\n'
        '[tenants.acme.mail_servers.relay]\nhost = "smtp.acme.example"\nport = 2525\n'
        'password = { env = "MAILGATE_SECRET_ACME_RELAY_PASSWORD" }\n'
        '[tenants.acme.email_accounts."a@acme.example"]\ndisplay_name = "A"\n'
        'mail_server = "relay"\n'
    )
    as_json = tmp_path / "mailgate.json"
    as_json.write_text(json.dumps(read_document(toml)))
    assert read_document(toml) == read_document(as_json)
    spec = parse(read_document(as_json), environ=ENV, base_dir=tmp_path)["acme"]
    assert spec.servers is not None and spec.servers["relay"].values["port"] == 2525
    assert spec.stages is None  # a section left out is left alone


def test_unreadable_documents() -> None:
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        loads_document("version = ", fmt="toml")
    with pytest.raises(ConfigFileError, match="not valid JSON"):
        loads_document("{", fmt="json")
    with pytest.raises(ConfigFileError, match="top level"):
        loads_document("[1]", fmt="json")
    with pytest.raises(ConfigFileError, match=r"\.json or \.toml"):
        read_document(Path("mailgate.yaml"))


def test_suggested_variable_names() -> None:
    assert env_name("acme", "relay", "password") == "MAILGATE_SECRET_ACME_RELAY_PASSWORD"
    assert env_name("a-b", "no.reply@x.example", "imap_password") == (
        "MAILGATE_SECRET_A_B_NO_REPLY_X_EXAMPLE_IMAP_PASSWORD"
    )


def test_json_output_and_toml_output() -> None:
    document = {"version": 1, "tenants": {"acme": {"name": "Acme"}}}
    assert json.loads(dumps_document(document, fmt="json")) == document
    if importlib.util.find_spec("tomli_w") is None:
        with pytest.raises(ConfigurationError, match="tomli-w"):
            dumps_document(document, fmt="toml")
    else:
        assert loads_document(dumps_document(document, fmt="toml"), fmt="toml") == document
