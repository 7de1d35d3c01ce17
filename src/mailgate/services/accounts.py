"""Email accounts (sender identities): address immutable, one default, server required."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailgate.compose.addresses import parse_address
from mailgate.domain.model import EmailAccount
from mailgate.domain.server_schema import DISPLAY_NAME, has_controls
from mailgate.errors import ValidationFailed
from mailgate.services import audit_trail, trust
from mailgate.services.account_imap import merge_secrets, parse_imap
from mailgate.services.context import Caller, Context
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.base import Tx
from mailgate.storage.servers import ServerRepo
from mailgate.storage.signing import KeystoreRepo


def check_address(value: str, field: str) -> str:
    """A bare, valid address in normalised form, or a 422 naming ``field``.

    The same strict parser as for sending (``compose.parse_address``), so an account's
    address is exactly what the send path accepts.
    """
    address = parse_address(value, field=field)
    if address.name is not None:
        raise ValidationFailed.field(field, "give the bare address, without a display name")
    return address.email


def check_display_name(value: object, field: str = "display_name") -> str:
    """A display name as stored: trimmed, not empty, within bounds and free of control
    characters (CR, LF, TAB, DEL and C1 included), which no header may carry; else a 422."""
    raw = str(value or "")
    name = raw.strip()
    if not name:
        raise ValidationFailed.field(field, "is required")
    problem = DISPLAY_NAME.problem(raw if has_controls(raw) else name)
    if problem is not None:
        raise ValidationFailed.field(field, problem)
    return name


MAX_DESCRIPTION = 200


def check_description(value: object, field: str = "description") -> str:
    """A short description as stored: trimmed, at most 200 characters, one line without
    control characters; empty when none is given; else a 422 naming ``field``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationFailed.field(field, "must be text")
    text = value.strip()
    if has_controls(text):
        raise ValidationFailed.field(
            field, "must be one line without control characters (CR, LF, TAB, DEL, C1)"
        )
    if len(text) > MAX_DESCRIPTION:
        raise ValidationFailed.field(field, f"at most {MAX_DESCRIPTION} characters")
    return text


async def _check_server(repo: ServerRepo, server_id: str | None, *, required: bool) -> None:
    if server_id is None:
        if required:
            raise ValidationFailed.field("mail_server_id", "is required")
        return
    if await repo.find(server_id) is None:
        raise ValidationFailed.field("mail_server_id", f"no mail server {server_id!r}")


async def _check_smime(
    tx: Tx, ctx: Context, caller: Caller, smime: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The S/MIME identity when its keystore exists in this tenant, can sign and holds the
    alias (a blank alias means the first entry); else a 422 naming ``smime.*``."""
    if smime is None:
        return None
    keystore_id = str(smime.get("keystore_id") or "")
    alias = smime.get("alias") or None
    if not keystore_id:
        raise ValidationFailed.field("smime.keystore_id", "is required")
    keystore = await KeystoreRepo(tx, ctx.box, caller.tenant_id).find(keystore_id)
    if keystore is None:
        raise ValidationFailed.field("smime.keystore_id", f"no keystore {keystore_id!r}")
    if keystore.kind != "pkcs12":
        raise ValidationFailed.field(
            "smime.keystore_id",
            f"the keystore {keystore.name!r} holds CA certificates; S/MIME signing needs a "
            "pkcs12 keystore with a private key",
        )
    if alias is not None:
        names = [a.alias for a in keystore.aliases]
        if alias not in names and alias.casefold() not in [n.casefold() for n in names]:
            known = ", ".join(repr(n) for n in names)
            raise ValidationFailed.field(
                "smime.alias", f"no entry named {alias!r}; the keystore holds {known}"
            )
    return {"keystore_id": keystore_id, "alias": alias}


async def list_accounts(ctx: Context, caller: Caller) -> list[EmailAccount]:
    async with ctx.db.read() as tx:
        return await AccountRepo(tx, ctx.box, caller.tenant_id).list()


async def get_account(ctx: Context, caller: Caller, account_id: str) -> EmailAccount:
    async with ctx.db.read() as tx:
        return await AccountRepo(tx, ctx.box, caller.tenant_id).get(account_id)


async def create_account(ctx: Context, caller: Caller, fields: Mapping[str, Any]) -> EmailAccount:
    address = check_address(str(fields.get("address") or ""), "address")
    display_name = check_display_name(fields.get("display_name"))
    reply_to = fields.get("reply_to")
    if reply_to:
        reply_to = check_address(reply_to, "reply_to")
    imap, imap_secrets = parse_imap(fields.get("imap"))
    values: dict[str, Any] = {
        "address": address,
        "display_name": display_name,
        "description": check_description(fields.get("description")),
        "reply_to": reply_to,
        "mail_server_id": fields.get("mail_server_id"),
        "is_default": bool(fields.get("is_default")),
        "imap": imap,
        "smime": fields.get("smime"),
    }
    secrets: dict[str, str] = {}
    merge_secrets(None, imap, imap_secrets, secrets)
    async with ctx.db.transaction() as tx:
        servers = ServerRepo(tx, ctx.box, caller.tenant_id)
        if not await servers.list():
            raise ValidationFailed.field(
                "mail_server_id",
                "this tenant has no mail server yet; add a mail server before an email account",
            )
        await _check_server(servers, values["mail_server_id"], required=True)
        if imap is not None:
            await trust.check_reference(tx, ctx.box, caller.tenant_id, imap, prefix="imap.")
        values["smime"] = await _check_smime(tx, ctx, caller, values["smime"])
        repo = AccountRepo(tx, ctx.box, caller.tenant_id)
        if values["is_default"]:
            await repo.clear_default()
        account_id = await repo.create(values, secrets)
        await audit_trail.record(
            tx,
            caller,
            "email_account.create",
            "email_account",
            account_id,
            address,
            list(fields.keys()),
        )
        return await repo.get(account_id)


async def update_account(
    ctx: Context, caller: Caller, account_id: str, fields: Mapping[str, Any]
) -> EmailAccount:
    async with ctx.db.transaction() as tx:
        repo = AccountRepo(tx, ctx.box, caller.tenant_id)
        account = await repo.get(account_id)
        if "address" in fields and str(fields["address"]).lower() != account.address.lower():
            raise ValidationFailed.field(
                "address", "is read-only after creation; create a new account instead"
            )
        values: dict[str, Any] = {}
        if "display_name" in fields:
            values["display_name"] = check_display_name(fields["display_name"])
        if "description" in fields:
            values["description"] = check_description(fields["description"])
        if "reply_to" in fields:
            reply_to = fields["reply_to"]
            values["reply_to"] = check_address(reply_to, "reply_to") if reply_to else None
        secrets = await repo.secrets(account_id)
        if "imap" in fields:
            imap, given = parse_imap(fields["imap"], account.imap)
            if imap is not None:
                await trust.check_reference(tx, ctx.box, caller.tenant_id, imap, prefix="imap.")
            values["imap"] = imap
            merge_secrets(account.imap, imap, given, secrets)
        if "smime" in fields:
            values["smime"] = await _check_smime(tx, ctx, caller, fields["smime"])
        if "mail_server_id" in fields:
            servers = ServerRepo(tx, ctx.box, caller.tenant_id)
            await _check_server(servers, fields["mail_server_id"], required=True)
            values["mail_server_id"] = fields["mail_server_id"]
        if "is_default" in fields:
            values["is_default"] = bool(fields["is_default"])
            if values["is_default"]:
                await repo.clear_default(except_id=account_id)
        await repo.update(account, values, secrets)
        await audit_trail.record(
            tx,
            caller,
            "email_account.update",
            "email_account",
            account_id,
            account.address,
            list(fields.keys()),
        )
        return await repo.get(account_id)


async def delete_account(ctx: Context, caller: Caller, account_id: str) -> None:
    async with ctx.db.transaction() as tx:
        repo = AccountRepo(tx, ctx.box, caller.tenant_id)
        account = await repo.get(account_id)
        await repo.delete(account)
        await audit_trail.record(
            tx, caller, "email_account.delete", "email_account", account_id, account.address
        )
