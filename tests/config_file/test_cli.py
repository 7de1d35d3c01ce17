"""`mailgate config apply` and `mailgate config export` through a real process."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.config_file.helpers import CANARY, ENV, run_mailgate

TOML = """\
version = 1

[tenants.acme]
name = "Acme Corp"
stages = ["development", "test", "production"]

[tenants.acme.mail_servers.relay]
host = "smtp.acme.example"
port = 587
auth = "password"
username = "mailer@acme.example"
password = { env = "MAILGATE_SECRET_ACME_RELAY_PASSWORD" }
stages = ["production"]
is_default = true

[tenants.acme.mail_servers.capture]
engine = "capture"
stages = ["development", "test"]

[tenants.acme.email_accounts."noreply@acme.example"]
display_name = "Acme"
mail_server = "relay"
is_default = true

[tenants.acme.apps.billing]
test_list = { addresses = ["qa@acme.example"], active = true }
"""


def _cli(args: list[str], workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_mailgate(["config", *args], workdir, **env)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "mailgate.toml").write_text(TOML)
    return tmp_path


SECRET = {"MAILGATE_SECRET_ACME_RELAY_PASSWORD": CANARY}


def test_apply_then_reapply_then_export(workdir: Path) -> None:
    first = _cli(["apply", "mailgate.toml"], workdir, **SECRET)
    assert first.returncode == 0, first.stderr
    assert "5 create, 0 update, 0 delete, 3 unchanged" in first.stdout
    again = _cli(["apply", "mailgate.toml"], workdir, **SECRET)
    assert again.returncode == 0, again.stderr
    assert "0 create, 0 update, 0 delete, 8 unchanged" in again.stdout

    exported = _cli(["export", "--tenant", "acme"], workdir)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    relay = document["tenants"]["acme"]["mail_servers"]["relay"]
    assert relay["password"] == {"env": "MAILGATE_SECRET_ACME_RELAY_PASSWORD"}
    for form in (CANARY, base64.b64encode(CANARY.encode()).decode(), CANARY.encode().hex()):
        assert form not in exported.stdout + exported.stderr
        assert form not in first.stdout + first.stderr

    # The exported JSON applies cleanly (nothing to change) and exports the same again.
    (workdir / "exported.json").write_text(exported.stdout)
    reapplied = _cli(["apply", "exported.json", "--prune"], workdir, **SECRET)
    assert reapplied.returncode == 0, reapplied.stderr
    assert " 0 create, 0 update, 0 delete" in " " + reapplied.stdout.splitlines()[-1]
    out = workdir / "again.json"
    assert _cli(["export", "-o", str(out)], workdir).returncode == 0
    assert json.loads(out.read_text()) == document


def test_dry_run_shows_the_plan_and_writes_nothing(workdir: Path) -> None:
    assert _cli(["apply", "mailgate.toml"], workdir, **SECRET).returncode == 0
    changed = TOML.replace("port = 587", 'port = 465\nsecurity = "tls"')
    (workdir / "changed.toml").write_text(changed)
    plan = _cli(["apply", "changed.toml", "--dry-run"], workdir, **SECRET)
    assert plan.returncode == 0, plan.stderr
    assert "dry run" in plan.stdout and "port, security" in plan.stdout
    assert "0 create, 1 update" in plan.stdout
    relay = json.loads(_cli(["export"], workdir).stdout)["tenants"]["acme"]["mail_servers"]
    assert relay["relay"]["port"] == 587


def test_a_missing_variable_fails_before_anything_changes(workdir: Path) -> None:
    result = _cli(["apply", "mailgate.toml"], workdir)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "tenants.acme.mail_servers.relay.password" in message
    assert "MAILGATE_SECRET_ACME_RELAY_PASSWORD" in message
    assert not (workdir / "var" / "mailgate.db").exists()


def test_an_invalid_value_names_its_path_and_exits_1(workdir: Path) -> None:
    (workdir / "bad.json").write_text(
        json.dumps(
            {
                "version": 1,
                "tenants": {"acme": {"name": "Acme", "mail_servers": {"relay": {"port": 70000}}}},
            }
        )
    )
    result = _cli(["apply", "bad.json"], workdir, **ENV)
    assert result.returncode == 1
    assert "tenants.acme.mail_servers.relay.port: must be between 1 and 65535" in " ".join(
        result.stderr.split()
    )


def test_a_refused_change_reports_what_was_applied_before_it(workdir: Path) -> None:
    (workdir / "port25.toml").write_text(TOML.replace("port = 587", "port = 25"))
    result = _cli(["apply", "port25.toml"], workdir, **SECRET)
    assert result.returncode == 1
    assert "tenants.acme.mail_servers.relay.port: port 25 is refused" in " ".join(
        result.stderr.split()
    )
    assert "Applied before the error" in result.stdout and "capture" in result.stdout


def test_export_refuses_an_unknown_format(workdir: Path) -> None:
    result = _cli(["export", "--format", "yaml"], workdir)
    assert result.returncode == 1
    assert "json or toml" in result.stderr
