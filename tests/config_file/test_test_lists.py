"""Test lists per stage, the users they name and account descriptions in the file."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mailgate.domain.roles import Permission
from mailgate.services import apps, tenants
from mailgate.services.auth import authorize
from mailgate.services.config_export import export_document
from mailgate.services.config_file import ConfigFileError
from mailgate.services.context import Context
from tests.config_file.helpers import CLI, ENV, apply_doc, doc, written

# The app's lists as the file gives them, and as the export writes them back.
BILLING: dict[str, Any] = {
    "test_list": {"addresses": [], "active": False},
    "test_lists": {
        "development": {
            "addresses": ["qa@acme.example"],
            "users": ["dana@acme.example"],
            "active": True,
        },
        "staging": {"addresses": ["uat@acme.example"], "active": False},
    },
}


def _staged(document: dict[str, Any]) -> dict[str, Any]:
    acme = document["tenants"]["acme"]
    acme["email_accounts"]["alerts@acme.example"]["description"] = "Night shift alerts"
    acme["apps"]["billing"] = copy.deepcopy(BILLING)
    return document


def _env(exported: dict[str, Any]) -> dict[str, str]:
    """The stored secrets under the variable names the export chose."""
    acme = exported["tenants"]["acme"]
    imap = acme["email_accounts"]["noreply@acme.example"]["imap"]
    return {
        acme["mail_servers"]["relay"]["password"]["env"]: ENV[
            "MAILGATE_SECRET_ACME_RELAY_PASSWORD"
        ],
        acme["mail_servers"]["backup"]["api_key"]["env"]: ENV[
            "MAILGATE_SECRET_ACME_BACKUP_API_KEY"
        ],
        imap["password"]["env"]: ENV["MAILGATE_SECRET_ACME_IMAP"],
    }


async def _dana(ctx: Context) -> str:
    await apply_doc(ctx, doc())
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_MEMBERS)
    user = await tenants.create_user(
        ctx, caller, email="dana@acme.example", password="correct horse battery", role="viewer"
    )
    return user.id


async def test_lists_per_stage_and_users_round_trip(ctx: Context) -> None:
    dana = await _dana(ctx)
    changes = written(await apply_doc(ctx, _staged(doc())))
    assert {(c.kind, c.name, c.fields) for c in changes} == {
        ("email account", "alerts@acme.example", ("description",)),
        (
            "app",
            "billing",
            ("test_list", "test_lists.development", "test_lists.staging", "test_lists.test"),
        ),
    }
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_APPS)
    billing = await apps.get_app(ctx, caller, "billing")
    assert billing.test_list.active is False and billing.test_list.empty
    assert billing.stage_lists["development"].users == (dana,)
    assert sorted(billing.stage_lists) == ["development", "staging"]  # test: emptied

    exported = await export_document(ctx, CLI)
    acme = exported["tenants"]["acme"]
    assert acme["email_accounts"]["alerts@acme.example"]["description"] == "Night shift alerts"
    assert acme["apps"]["billing"] == BILLING
    assert written(await apply_doc(ctx, exported, env=_env(exported))) == []
    # The user's address changes: the export names the user by the new one.
    await tenants.update_user(ctx, caller, dana, role=None, password=None, email="d@acme.example")
    again = await export_document(ctx, CLI)
    development = again["tenants"]["acme"]["apps"]["billing"]["test_lists"]["development"]
    assert development["users"] == ["d@acme.example"]
    assert written(await apply_doc(ctx, again, env=_env(again))) == []


@pytest.mark.parametrize(
    ("where", "value", "path"),
    [
        ("users", ["nobody@acme.example"], "test_lists.development.users[0]"),
        ("addresses", ["not an address"], "test_lists.development.addresses[0]"),
        ("color", "red", "test_lists.development.color"),
    ],
)
async def test_a_bad_list_entry_is_named_at_its_path(
    ctx: Context, where: str, value: Any, path: str
) -> None:
    await _dana(ctx)
    document = _staged(doc())
    document["tenants"]["acme"]["apps"]["billing"]["test_lists"]["development"][where] = value
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, document)
    assert caught.value.path == f"tenants.acme.apps.billing.{path}"


async def test_a_list_on_a_stage_the_tenant_lacks_is_refused(ctx: Context) -> None:
    await _dana(ctx)
    document = _staged(doc())
    lists = document["tenants"]["acme"]["apps"]["billing"]["test_lists"]
    lists["qa"] = {"addresses": ["qa@acme.example"], "active": True}
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, document)
    assert caught.value.path == "tenants.acme.apps.billing.test_lists.qa"


async def test_a_bad_description_is_named(ctx: Context) -> None:
    document = doc()
    account = document["tenants"]["acme"]["email_accounts"]["alerts@acme.example"]
    account["description"] = "two\nlines"
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, document)
    assert caught.value.path == "tenants.acme.email_accounts.alerts@acme.example.description"
