"""What depends on a mail server, and moving it elsewhere before the server is deleted."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select, update

from mailgate.domain.delivery import MessageStatus
from mailgate.domain.server_deletion import Dependants
from mailgate.storage.base import Tx, utcnow
from mailgate.storage.tables import email_accounts, mail_servers, messages, stages

#: Messages that still wait for (or are being sent through) their server.
WAITING = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value, MessageStatus.SENDING.value)


async def dependants(tx: Tx, tenant_id: str, server_id: str, name: str) -> Dependants:
    stage_names = (
        await tx.execute(
            select(stages.c.name)
            .where(stages.c.tenant_id == tenant_id, stages.c.mail_server_id == server_id)
            .order_by(stages.c.name)
        )
    ).scalars()
    addresses = (
        await tx.execute(
            select(email_accounts.c.address)
            .where(
                email_accounts.c.tenant_id == tenant_id,
                email_accounts.c.mail_server_id == server_id,
            )
            .order_by(email_accounts.c.address)
        )
    ).scalars()
    row = (
        await tx.execute(select(mail_servers.c.is_default).where(mail_servers.c.id == server_id))
    ).scalar_one()
    fallback_of = (
        await tx.execute(
            select(mail_servers.c.name)
            .where(
                mail_servers.c.tenant_id == tenant_id,
                mail_servers.c.fallback_server_id == server_id,
            )
            .order_by(mail_servers.c.name)
        )
    ).scalars()
    mail = (
        await tx.execute(
            select(func.count()).where(
                messages.c.server_id == server_id, messages.c.status.in_(WAITING)
            )
        )
    ).scalar_one()
    return Dependants(
        server_id=server_id,
        server_name=name,
        stages=tuple(stage_names),
        accounts=tuple(addresses),
        is_default=bool(row),
        fallback_of=tuple(fallback_of),
        mail=int(mail),
    )


async def move_stages(tx: Tx, tenant_id: str, server_id: str, target: str | None) -> None:
    await tx.execute(
        update(stages)
        .where(stages.c.tenant_id == tenant_id, stages.c.mail_server_id == server_id)
        .values(mail_server_id=target)
    )


async def move_accounts(tx: Tx, tenant_id: str, server_id: str, target: str | None) -> None:
    await tx.execute(
        update(email_accounts)
        .where(
            email_accounts.c.tenant_id == tenant_id,
            email_accounts.c.mail_server_id == server_id,
        )
        .values(mail_server_id=target, updated_at=utcnow())
    )


async def set_default(tx: Tx, tenant_id: str, target: str) -> None:
    await tx.execute(
        update(mail_servers)
        .where(mail_servers.c.tenant_id == tenant_id)
        .values(is_default=mail_servers.c.id == target)
    )


async def waiting_mail(tx: Tx, server_id: str) -> list[tuple[str, str | None, str | None]]:
    """``(message id, stage, account id)`` of the mail waiting for ``server_id``."""
    rows = await tx.execute(
        select(messages.c.id, messages.c.stage, messages.c.account_id).where(
            messages.c.server_id == server_id, messages.c.status.in_(WAITING)
        )
    )
    return [(r.id, r.stage, r.account_id) for r in rows]


async def move_mail(tx: Tx, targets: Mapping[str, str | None]) -> None:
    """Give each waiting message its new server (None: none); held mail becomes due."""
    now = utcnow()
    for message_id, target in targets.items():
        await tx.execute(
            update(messages)
            .where(messages.c.id == message_id, messages.c.held.is_(True))
            .values(held=False, next_attempt_at=now)
        )
        await tx.execute(
            update(messages)
            .where(messages.c.id == message_id)
            .values(server_id=target, updated_at=now)
        )
