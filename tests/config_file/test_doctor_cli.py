"""`mailgate doctor` through a real process, on an instance set up by `mailgate config apply`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mailgate.storage.secretbox import generate_key
from tests.config_file.helpers import run_mailgate

SECRET = {"MAILGATE_SECRET_ACME_RELAY_PASSWORD": "doctor-Secr3t-41"}

TOML = """\
version = 1

[tenants.acme]
name = "Acme Corp"
stages = ["development", "test", "production"]

[tenants.acme.mail_servers.relay]
host = "smtp.acme.example"
auth = "password"
username = "mailer@acme.example"
password = { env = "MAILGATE_SECRET_ACME_RELAY_PASSWORD" }
stages = ["production"]

[tenants.acme.mail_servers.capture]
engine = "capture"
stages = ["development", "test"]
is_default = true

[tenants.acme.email_accounts."noreply@acme.example"]
display_name = "Acme"
mail_server = "capture"
is_default = true
"""


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    (tmp_path / "mailgate.toml").write_text(TOML)
    applied = run_mailgate(["config", "apply", "mailgate.toml"], tmp_path, **SECRET)
    assert applied.returncode == 0, applied.stderr
    return tmp_path


def _sql(workdir: Path, statement: str, *args: object) -> None:
    with sqlite3.connect(workdir / "var" / "mailgate.db") as conn:
        conn.execute(statement, args)


def test_a_healthy_instance_passes(instance: Path) -> None:
    result = run_mailgate(["doctor"], instance)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No problems found." in result.stdout
    for check in ("settings", "database", "keys", "secrets", "servers", "routes", "dkim"):
        assert f"[ok]   {check}" in result.stdout
    assert SECRET["MAILGATE_SECRET_ACME_RELAY_PASSWORD"] not in result.stdout + result.stderr


def test_a_stored_server_with_invalid_options_is_reported_with_the_fix(instance: Path) -> None:
    options = json.dumps({"ehlo_name": "relay_01.corp", "helo": "x"})
    _sql(instance, "UPDATE mail_servers SET options = ? WHERE name = 'relay'", options)
    result = run_mailgate(["doctor"], instance)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "[FAIL] servers: tenant acme, mail server 'relay'" in out
    assert "options.ehlo_name" in out and "options.helo: unknown option" in out
    assert "fix: correct or remove the option 'ehlo_name'" in out
    assert "2 problems found." in out


def test_a_server_the_engine_refuses_is_reported(instance: Path) -> None:
    _sql(instance, "UPDATE mail_servers SET username = NULL WHERE name = 'relay'")
    result = run_mailgate(["doctor"], instance)
    assert result.returncode == 1
    assert "cannot build its engine" in result.stdout and "needs a username" in result.stdout


def test_stages_without_a_route_and_missing_defaults_are_reported(instance: Path) -> None:
    _sql(instance, "UPDATE mail_servers SET is_default = 0")
    _sql(instance, "UPDATE email_accounts SET is_default = 0")
    _sql(instance, "UPDATE stages SET mail_server_id = NULL WHERE name = 'test'")
    result = run_mailgate(["doctor"], instance)
    assert result.returncode == 1
    out = result.stdout
    assert "tenant acme: has no default mail server" in out
    assert "tenant acme: has no default email account" in out
    assert "stage 'test': has no mail server" in out
    assert "stage 'development'" not in out


def test_a_sender_domain_without_dkim_is_reported(instance: Path) -> None:
    _sql(
        instance,
        "UPDATE email_accounts SET mail_server_id = "
        "(SELECT id FROM mail_servers WHERE name = 'relay')",
    )
    result = run_mailgate(["doctor"], instance)
    assert result.returncode == 1
    assert "sender domain acme.example: has no DKIM key" in result.stdout
    assert "/api/v1/tenants/acme/dkim-keys" in result.stdout


def test_keys_that_do_not_open_the_secrets_are_reported(instance: Path) -> None:
    result = run_mailgate(["doctor"], instance, MAILGATE_SECRET_KEYS=generate_key())
    assert result.returncode == 1
    assert "[FAIL] secrets: mail_servers " in result.stdout
    assert "restore the key" in result.stdout


def test_missing_keys_and_old_schema_stop_early(instance: Path, tmp_path: Path) -> None:
    (instance / "var" / "secret.key").rename(instance / "var" / "moved.key")
    result = run_mailgate(["doctor"], instance)
    assert result.returncode == 1
    assert "[FAIL] keys:" in result.stdout and "[skip] servers" in result.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_mailgate(["doctor"], empty)
    assert result.returncode == 1
    assert "does not exist" in result.stdout and "mailgate db upgrade" in result.stdout
    assert not (empty / "var").exists()
    created = run_mailgate(["db", "upgrade"], empty)
    assert created.returncode == 0, created.stderr
    _sql(empty, "UPDATE alembic_version SET version_num = '0001'")
    result = run_mailgate(["doctor"], empty)
    assert result.returncode == 1
    assert "is at schema 0001" in result.stdout and "mailgate db upgrade" in result.stdout


def test_invalid_settings_are_reported(tmp_path: Path) -> None:
    result = run_mailgate(["doctor"], tmp_path, MAILGATE_PORT="not-a-port")
    assert result.returncode == 1
    assert "[FAIL] settings" in result.stdout and "[skip] database" in result.stdout
