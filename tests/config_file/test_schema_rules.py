"""A configuration file follows the same server schema as the API: hosts, options, names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailgate.services.config_file import ConfigFileError, parse
from tests.config_file.helpers import ENV, doc

RELAY = "tenants.acme.mail_servers.relay"
NOREPLY = "tenants.acme.email_accounts.noreply@acme.example"


def _error(document: dict[str, Any]) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as caught:
        parse(document, environ=ENV, base_dir=Path("."))
    return caught.value


@pytest.mark.parametrize("host", ["not a host!!", "smtp://mail.example.com:587", "mx:25"])
def test_bad_hosts_are_refused(host: str) -> None:
    document = doc()
    document["tenants"]["acme"]["mail_servers"]["relay"]["host"] = host
    assert _error(document).path == f"{RELAY}.host"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"ehlo_name": "relay_01.corp"}, "ehlo_name"),
        ({"disable_auth_plain": "maybe"}, "disable_auth_plain"),
        ({"unknown_key": "1"}, "unknown_key"),
    ],
)
def test_bad_options_are_refused(options: dict[str, str], key: str) -> None:
    document = doc()
    document["tenants"]["acme"]["mail_servers"]["relay"]["options"] = options
    assert _error(document).path == f"{RELAY}.options.{key}"


@pytest.mark.parametrize("name", ["Acme\x85", "Acme\tOps"])
def test_display_names_with_controls_are_refused(name: str) -> None:
    document = doc()
    document["tenants"]["acme"]["email_accounts"]["noreply@acme.example"]["display_name"] = name
    assert _error(document).path == f"{NOREPLY}.display_name"


def test_a_bad_imap_host_is_refused() -> None:
    document = doc()
    account = document["tenants"]["acme"]["email_accounts"]["noreply@acme.example"]
    account["imap"]["host"] = "imaps://imap.acme.example"
    assert _error(document).path == f"{NOREPLY}.imap.host"
