"""Response bodies of the email account API (``/openapi.json``): an account with its IMAP
inbox settings, never a secret; write-only values are shown as ``*_set`` flags."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mailgate.domain.model import EmailAccount

__all__ = ["EmailAccountOut", "ImapOAuthOut", "ImapOut"]


class ImapOAuthOut(BaseModel):
    provider: str | None = None
    client_id: str | None = None
    tenant_id: str | None = None
    scope: str | None = None
    token_url: str | None = None
    subject: str | None = None
    client_secret_set: bool = False
    service_account_json_set: bool = False


class ImapOut(BaseModel):
    host: str
    port: int
    security: str
    username: str | None
    password_set: bool
    folder: str
    sync_interval_minutes: int | None
    auth: str = "password"
    ca_certificates: str | None = None
    ca_keystore: str | None = None
    oauth: ImapOAuthOut | None = None


class EmailAccountOut(BaseModel):
    id: str
    address: str
    display_name: str
    description: str
    reply_to: str | None
    mail_server_id: str | None
    is_default: bool
    imap: ImapOut | None
    smime: dict[str, Any] | None
    last_sync_at: datetime | None
    last_sync_error: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, a: EmailAccount) -> EmailAccountOut:
        imap = None
        if a.imap is not None:
            imap = ImapOut(
                host=a.imap.host,
                port=a.imap.port,
                security=a.imap.security,
                username=a.imap.username,
                password_set="imap_password" in a.secrets_set,
                folder=a.imap.folder,
                sync_interval_minutes=a.imap.sync_interval_minutes,
                auth=a.imap.auth,
                ca_certificates=a.imap.ca_certificates,
                ca_keystore=a.imap.ca_keystore,
                oauth=_imap_oauth_out(a),
            )
        smime = None
        if a.smime is not None:
            smime = {"keystore_id": a.smime.keystore_id, "alias": a.smime.alias}
        return cls(
            id=a.id,
            address=a.address,
            display_name=a.display_name,
            description=a.description,
            reply_to=a.reply_to,
            mail_server_id=a.mail_server_id,
            is_default=a.is_default,
            imap=imap,
            smime=smime,
            last_sync_at=a.last_sync_at,
            last_sync_error=a.last_sync_error,
            created_at=a.created_at,
            updated_at=a.updated_at,
            version=a.version,
        )


def _imap_oauth_out(a: EmailAccount) -> ImapOAuthOut | None:
    if a.imap is None or not a.imap.oauth:
        return None
    return ImapOAuthOut(
        **{k: v for k, v in a.imap.oauth.items() if k in ImapOAuthOut.model_fields},
        client_secret_set="imap_oauth_client_secret" in a.secrets_set,
        service_account_json_set="imap_oauth_service_account_json" in a.secrets_set,
    )
