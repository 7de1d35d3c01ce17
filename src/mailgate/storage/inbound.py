"""Inbound mail: ingested messages, mailbox cursors, the sync lease and bounce matching.

* :class:`InboundStore` — what one sync of one account reads and writes (the store the
  sync pipeline in ``mailgate.inbound.sync`` drives): ``begin`` takes the account's lease
  and opens its IMAP password, ``save`` records a batch of messages with the mailbox
  cursor and the bounces they carry in one transaction, ``finish`` releases the lease and
  stamps the account's ``last_sync_at`` / ``last_sync_error``.
* The lease makes one sync per account at a time across every process sharing the
  database; a lease whose holder died expires by itself.
* Bounces found in a batch are matched and applied by :mod:`mailgate.storage.bounces`,
  complaints (ARF reports) by :mod:`mailgate.storage.complaints`, and ordinary mail is
  announced as ``message.received`` by :mod:`mailgate.storage.received`, all in the same
  transaction.
* :func:`list_inbox`, :func:`due_accounts` — the inbox listing and the scheduler's query.
* :func:`purge_ingested` — housekeeping: forget ingested messages past the retention.
  The mailbox cursors stay, so a purged message is not fetched again, and what a bounce
  did stays on the message it matched (recipient status, delivery-log entry).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from mailgate import metrics
from mailgate.domain.ids import new_id
from mailgate.domain.inbound import (
    BatchResult,
    DueAccount,
    ImapTarget,
    InboundBatch,
    InboundMessage,
    InboxItem,
    MailboxCursor,
    imap_target,
)
from mailgate.errors import Conflict, NotFound
from mailgate.storage.accounts import secret_context
from mailgate.storage.base import Tx, as_utc, utcnow
from mailgate.storage.bounces import apply_bounce, bounce_json
from mailgate.storage.complaints import apply_complaint, complaint_json
from mailgate.storage.db import Database
from mailgate.storage.received import record_received
from mailgate.storage.secretbox import SecretBox
from mailgate.storage.signing import ca_bundles
from mailgate.storage.tables import (
    email_accounts,
    inbound_mailboxes,
    inbound_messages,
    inbound_sync_leases,
)

_ERROR_CHARS = 2000


class InboundStore:
    """The rows one sync of one account touches; ``lease`` bounds a silent holder."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        tenant_id: str,
        account_id: str,
        lease: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.box = box
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.lease = lease
        self.clock = clock

    async def begin(self, holder: str) -> ImapTarget | None:
        """Take the lease and return the inbox to read; None (no lease taken) when the
        account has no IMAP settings. Raises ``Conflict`` while another sync holds it."""
        async with self.db.transaction() as tx:
            row = (
                await tx.execute(
                    select(
                        email_accounts.c.address, email_accounts.c.imap, email_accounts.c.secrets
                    ).where(
                        email_accounts.c.tenant_id == self.tenant_id,
                        email_accounts.c.id == self.account_id,
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"No email account {self.account_id!r}.")
            imap = row.imap if isinstance(row.imap, dict) else None
            if imap_target(row.address, imap, {}) is None:
                return None
            await self._take_lease(tx, holder)
            secrets = self.box.open_fields(row.secrets, context=secret_context(self.account_id))
            name = imap.get("ca_keystore") if imap else None
            if imap is not None and name:
                # The inbox trusts what its keystore holds now (None: it is gone).
                found = await ca_bundles(tx, self.box, [(self.tenant_id, str(name))])
                imap = {**imap, "ca_certificates": found.get((self.tenant_id, str(name)))}
        return imap_target(row.address, imap, secrets)

    async def _take_lease(self, tx: Tx, holder: str) -> None:
        now = self.clock()
        lease = inbound_sync_leases
        taken = await tx.execute(
            update(lease)
            .where(
                lease.c.account_id == self.account_id,
                or_(lease.c.owner.is_(None), lease.c.expires_at < now),
            )
            .values(owner=holder, expires_at=now + self.lease, started_at=now)
        )
        if taken.rowcount:
            return
        exists = (
            await tx.execute(
                select(lease.c.started_at).where(lease.c.account_id == self.account_id)
            )
        ).first()
        if exists is None:
            try:
                async with tx.begin_nested():
                    await tx.execute(
                        insert(lease).values(
                            account_id=self.account_id,
                            owner=holder,
                            expires_at=now + self.lease,
                            started_at=now,
                        )
                    )
                return
            except IntegrityError:
                exists = None  # another process inserted it first: it holds the lease
        started = as_utc(exists.started_at) if exists is not None else now
        raise Conflict(
            "A sync of this account is already running (started "
            f"{started.isoformat(timespec='seconds') if started else 'just now'}); "
            "try again when it has finished."
        )

    async def _extend_lease(self, tx: Tx, holder: str) -> None:
        now = self.clock()
        kept = await tx.execute(
            update(inbound_sync_leases)
            .where(
                inbound_sync_leases.c.account_id == self.account_id,
                inbound_sync_leases.c.owner == holder,
            )
            .values(expires_at=now + self.lease)
        )
        if not kept.rowcount:
            raise Conflict("This sync lost its lease (it ran longer than the lease allows).")

    async def cursor(self, mailbox: str) -> MailboxCursor | None:
        """How far ``mailbox`` has been read, or None before its first sync."""
        async with self.db.read() as tx:
            row = (
                await tx.execute(
                    select(inbound_mailboxes.c.uidvalidity, inbound_mailboxes.c.last_uid).where(
                        inbound_mailboxes.c.account_id == self.account_id,
                        inbound_mailboxes.c.mailbox == mailbox,
                    )
                )
            ).first()
        if row is None:
            return None
        return MailboxCursor(mailbox=mailbox, uidvalidity=row.uidvalidity, last_uid=row.last_uid)

    async def save(self, holder: str, batch: InboundBatch) -> BatchResult:
        """Record ``batch``: new messages, their bounces and the cursor, all or nothing."""
        async with self.db.transaction() as tx:
            await self._extend_lease(tx, holder)
            fresh, duplicates = await self._fresh(tx, batch)
            now = self.clock()
            bounces = applied = complaints = 0
            bounced: dict[str | None, int] = {}
            rows: list[dict[str, Any]] = []
            # Ids sort by time; sorted within the batch, they also follow the UIDs.
            ids = sorted(new_id() for _ in fresh)
            received: list[tuple[str, InboundMessage]] = []
            for row_id, message in zip(ids, fresh, strict=True):
                matched: str | None = None
                bounce_record: dict[str, Any] | None = None
                complaint_record: dict[str, Any] | None = None
                if message.bounce is not None:
                    bounces += 1
                    match = await apply_bounce(tx, self.tenant_id, message, message.bounce, now=now)
                    matched = match.message_id
                    applied += sum(match.applied)
                    bounced[match.server_id] = bounced.get(match.server_id, 0) + sum(match.applied)
                    bounce_record = bounce_json(message.bounce, match.applied)
                elif message.complaint is not None:
                    complaints += 1
                    matched, complained = await apply_complaint(
                        tx, self.tenant_id, message, message.complaint, now=now
                    )
                    complaint_record = complaint_json(message.complaint, complained)
                else:
                    received.append((row_id, message))
                row = self._row(row_id, batch.cursor, message, bounce_record, matched, now)
                rows.append({**row, "complaint": complaint_record})
            if rows:
                await tx.execute(insert(inbound_messages), rows)
            await record_received(
                tx, self.tenant_id, self.account_id, batch.cursor.mailbox, received, now=now
            )
            await self._save_cursor(tx, batch.cursor, now)
        for server_id, count in bounced.items():  # counted once committed
            metrics.bounced(self.tenant_id, server_id, count)
        return BatchResult(
            stored=len(rows),
            duplicates=duplicates,
            bounces=bounces,
            bounced_recipients=applied,
            complaints=complaints,
        )

    async def _fresh(self, tx: Tx, batch: InboundBatch) -> tuple[list[InboundMessage], int]:
        """The batch without messages already stored: the same UID under the same
        UIDVALIDITY, or the same Message-ID stored under an earlier UIDVALIDITY (the server
        renumbered the mailbox; RFC 9051 section 2.3.1.1)."""
        if not batch.messages:
            return [], 0
        im = inbound_messages
        mine = and_(
            im.c.tenant_id == self.tenant_id,
            im.c.account_id == self.account_id,
            im.c.mailbox == batch.cursor.mailbox,
        )
        uids = [m.uid for m in batch.messages]
        seen_uids = set(
            (
                await tx.execute(
                    select(im.c.uid).where(
                        mine, im.c.uidvalidity == batch.cursor.uidvalidity, im.c.uid.in_(uids)
                    )
                )
            ).scalars()
        )
        ids = sorted({m.message_id for m in batch.messages if m.message_id})
        seen_ids: set[str] = set()
        if ids:
            seen_ids = set(
                (
                    await tx.execute(
                        select(im.c.message_id).where(
                            mine,
                            im.c.uidvalidity != batch.cursor.uidvalidity,
                            im.c.message_id.in_(ids),
                        )
                    )
                ).scalars()
            )
        fresh = [
            m
            for m in batch.messages
            if m.uid not in seen_uids and not (m.message_id and m.message_id in seen_ids)
        ]
        return fresh, len(batch.messages) - len(fresh)

    def _row(
        self,
        row_id: str,
        cursor: MailboxCursor,
        message: InboundMessage,
        bounce: dict[str, Any] | None,
        matched: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        return {
            "id": row_id,
            "tenant_id": self.tenant_id,
            "account_id": self.account_id,
            "mailbox": cursor.mailbox,
            "uidvalidity": cursor.uidvalidity,
            "uid": message.uid,
            "message_id": message.message_id,
            "sender": message.sender,
            "subject": message.subject,
            "date": message.date,
            "received_at": message.received_at,
            "size": message.size,
            "raw": message.raw,
            "truncated": message.truncated,
            "is_bounce": message.bounce is not None,
            "bounce": bounce,
            "matched_message_id": matched,
            "created_at": now,
        }

    async def _save_cursor(self, tx: Tx, cursor: MailboxCursor, now: datetime) -> None:
        mb = inbound_mailboxes
        values = {"uidvalidity": cursor.uidvalidity, "last_uid": cursor.last_uid, "updated_at": now}
        done = await tx.execute(
            update(mb)
            .where(mb.c.account_id == self.account_id, mb.c.mailbox == cursor.mailbox)
            .values(**values)
        )
        if not done.rowcount:
            await tx.execute(
                insert(mb).values(account_id=self.account_id, mailbox=cursor.mailbox, **values)
            )

    async def finish(self, holder: str, *, error: str | None) -> None:
        """Release the lease and stamp the account with the time and error of this sync."""
        now = self.clock()
        async with self.db.transaction() as tx:
            await tx.execute(
                update(inbound_sync_leases)
                .where(
                    inbound_sync_leases.c.account_id == self.account_id,
                    inbound_sync_leases.c.owner == holder,
                )
                .values(owner=None, expires_at=None)
            )
            await tx.execute(
                update(email_accounts)
                .where(
                    email_accounts.c.tenant_id == self.tenant_id,
                    email_accounts.c.id == self.account_id,
                )
                .values(last_sync_at=now, last_sync_error=error[:_ERROR_CHARS] if error else None)
            )


# Reading -------------------------------------------------------------------------------------


_INBOX_COLUMNS = [c for c in inbound_messages.c if c.name not in ("raw", "tenant_id", "account_id")]


async def list_inbox(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    *,
    limit: int,
    before: str | None = None,
    bounces_only: bool = False,
) -> list[InboxItem]:
    """Newest first; ``before`` is the last id of the previous page."""
    im = inbound_messages
    query = (
        select(*_INBOX_COLUMNS)
        .where(im.c.tenant_id == tenant_id, im.c.account_id == account_id)
        .order_by(im.c.id.desc())
        .limit(limit)
    )
    if before:
        query = query.where(im.c.id < before)
    if bounces_only:
        query = query.where(im.c.is_bounce.is_(True))
    out = []
    for row in await tx.execute(query):
        data = dict(row._mapping)
        for key in ("date", "received_at", "created_at"):
            data[key] = as_utc(data[key])
        out.append(InboxItem(**data))
    return out


async def raw_of(tx: Tx, tenant_id: str, account_id: str, item_id: str) -> bytes:
    raw = (
        await tx.execute(
            select(inbound_messages.c.raw).where(
                inbound_messages.c.tenant_id == tenant_id,
                inbound_messages.c.account_id == account_id,
                inbound_messages.c.id == item_id,
            )
        )
    ).scalar_one_or_none()
    if raw is None:
        raise NotFound(f"No inbound message {item_id!r}.")
    return bytes(raw)


async def due_accounts(
    tx: Tx, *, now: datetime, default_interval: timedelta, limit: int = 100
) -> list[DueAccount]:
    """Accounts with an IMAP inbox whose interval has passed since their last sync and
    that no sync holds; the longest-waiting first.

    An account's ``imap.sync_interval_minutes`` overrides ``default_interval``; ``0`` means
    manual sync only.
    """
    lease = inbound_sync_leases
    rows = await tx.execute(
        select(
            email_accounts.c.id,
            email_accounts.c.tenant_id,
            email_accounts.c.imap,
            email_accounts.c.last_sync_at,
        )
        .select_from(email_accounts.outerjoin(lease, lease.c.account_id == email_accounts.c.id))
        .where(or_(lease.c.owner.is_(None), lease.c.expires_at < now))
        .order_by(func.coalesce(email_accounts.c.last_sync_at, email_accounts.c.created_at))
    )
    due: list[DueAccount] = []
    for account_id, tenant_id, imap, last in rows:
        if not isinstance(imap, dict) or not imap.get("host"):
            continue
        minutes = imap.get("sync_interval_minutes")
        if minutes is not None and int(minutes) <= 0:
            continue
        interval = timedelta(minutes=int(minutes)) if minutes is not None else default_interval
        last_at = as_utc(last)
        if last_at is None or last_at + interval <= now:
            due.append(DueAccount(tenant_id=tenant_id, account_id=account_id))
            if len(due) >= limit:
                break
    return due


# Housekeeping --------------------------------------------------------------------------------


async def purge_ingested(tx: Tx, *, older_than: datetime) -> int:
    """Delete messages ingested (stored by Mailgate) before ``older_than``; their number.

    Nothing refers to an ingested row: a bounce's effects were written to the sent message
    it matched when it was ingested (the recipient's ``bounced`` status and an ``imap``
    entry in the delivery log), so they outlive it. The cursors in ``inbound_mailboxes``
    are kept, so the next sync does not fetch a purged message again.
    """
    result = await tx.execute(
        delete(inbound_messages).where(inbound_messages.c.created_at < older_than)
    )
    return int(result.rowcount or 0)
