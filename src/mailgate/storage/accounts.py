"""Email accounts (sender identities) and their sealed IMAP password."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.domain.model import EmailAccount, ImapSettings, SmimeSettings
from mailgate.errors import NotFound
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.secretbox import SecretBox
from mailgate.storage.tables import email_accounts

PLAIN_COLUMNS: tuple[str, ...] = (
    "address",
    "display_name",
    "description",
    "reply_to",
    "mail_server_id",
    "is_default",
    "imap",
    "smime",
)


def secret_context(account_id: str) -> str:
    return f"email_accounts:{account_id}:secrets"


def _account(row: Any, secrets_set: frozenset[str]) -> EmailAccount:
    imap = ImapSettings(**row.imap) if row.imap else None
    smime = SmimeSettings(**row.smime) if row.smime else None
    return EmailAccount(
        id=row.id,
        tenant_id=row.tenant_id,
        address=row.address,
        display_name=row.display_name,
        reply_to=row.reply_to,
        mail_server_id=row.mail_server_id,
        is_default=row.is_default,
        imap=imap,
        smime=smime,
        secrets_set=secrets_set,
        last_sync_at=as_utc(row.last_sync_at),
        last_sync_error=row.last_sync_error,
        version=row.version,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
        description=row.description or "",
    )


class AccountRepo:
    """Email-account rows of one tenant."""

    def __init__(self, tx: Tx, box: SecretBox, tenant_id: str) -> None:
        self.tx = tx
        self.box = box
        self.tenant_id = tenant_id

    def _from_row(self, row: Any) -> EmailAccount:
        names = frozenset(self.box.open_fields(row.secrets, context=secret_context(row.id)))
        return _account(row, names)

    async def list(self) -> list[EmailAccount]:
        rows = await self.tx.execute(
            select(email_accounts)
            .where(email_accounts.c.tenant_id == self.tenant_id)
            .order_by(email_accounts.c.id)
        )
        return [self._from_row(r) for r in rows]

    async def find(self, account_id: str) -> EmailAccount | None:
        row = (
            await self.tx.execute(
                select(email_accounts).where(
                    email_accounts.c.tenant_id == self.tenant_id,
                    email_accounts.c.id == account_id,
                )
            )
        ).first()
        return self._from_row(row) if row else None

    async def get(self, account_id: str) -> EmailAccount:
        account = await self.find(account_id)
        if account is None:
            raise NotFound(f"No email account {account_id!r}.")
        return account

    async def find_by_address(self, address: str) -> EmailAccount | None:
        row = (
            await self.tx.execute(
                select(email_accounts).where(
                    email_accounts.c.tenant_id == self.tenant_id,
                    func.lower(email_accounts.c.address) == address.lower(),
                )
            )
        ).first()
        return self._from_row(row) if row else None

    async def find_default(self) -> EmailAccount | None:
        row = (
            await self.tx.execute(
                select(email_accounts).where(
                    email_accounts.c.tenant_id == self.tenant_id,
                    email_accounts.c.is_default.is_(True),
                )
            )
        ).first()
        return self._from_row(row) if row else None

    async def secrets(self, account_id: str) -> dict[str, str]:
        sealed = (
            await self.tx.execute(
                select(email_accounts.c.secrets).where(
                    email_accounts.c.tenant_id == self.tenant_id,
                    email_accounts.c.id == account_id,
                )
            )
        ).scalar_one_or_none()
        return self.box.open_fields(sealed, context=secret_context(account_id))

    async def create(self, values: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        account_id = new_id()
        now = utcnow()
        row = {k: values[k] for k in PLAIN_COLUMNS if k in values}
        message = f"An email account {values['address']!r} already exists."
        async with unique_guard("address", message):
            await self.tx.execute(
                insert(email_accounts).values(
                    id=account_id,
                    tenant_id=self.tenant_id,
                    secrets=self.box.seal_fields(secrets, context=secret_context(account_id)),
                    version=1,
                    created_at=now,
                    updated_at=now,
                    **row,
                )
            )
        return account_id

    async def update(
        self, account: EmailAccount, values: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        row = {k: values[k] for k in PLAIN_COLUMNS if k in values and k != "address"}
        await self.tx.execute(
            update(email_accounts)
            .where(email_accounts.c.id == account.id)
            .values(
                secrets=self.box.seal_fields(secrets, context=secret_context(account.id)),
                version=account.version + 1,
                updated_at=utcnow(),
                **row,
            )
        )

    async def record_sync(self, account_id: str, *, error: str | None) -> None:
        await self.tx.execute(
            update(email_accounts)
            .where(email_accounts.c.id == account_id)
            .values(last_sync_at=utcnow(), last_sync_error=error)
        )

    async def clear_default(self, *, except_id: str | None = None) -> None:
        query = update(email_accounts).where(
            email_accounts.c.tenant_id == self.tenant_id, email_accounts.c.is_default.is_(True)
        )
        if except_id:
            query = query.where(email_accounts.c.id != except_id)
        await self.tx.execute(query.values(is_default=False))

    async def delete(self, account: EmailAccount) -> None:
        await self.tx.execute(delete(email_accounts).where(email_accounts.c.id == account.id))
