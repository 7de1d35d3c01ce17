"""What depends on a mail server, and moving it elsewhere before the server is deleted."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from sqlalchemy import func, insert, select, update

from mailgate.domain.delivery import MessageStatus
from mailgate.domain.ids import new_id
from mailgate.domain.routing import TenantRouting
from mailgate.domain.server_deletion import Dependants
from mailgate.storage.base import Tx, utcnow
from mailgate.storage.queue_types import AttemptRecord
from mailgate.storage.tables import attempts, email_accounts, mail_servers, messages, stages

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


async def routing_of(
    tx: Tx, tenant_ids: Collection[str], *, without: str | None = None
) -> dict[str, TenantRouting]:
    """The routing now of each tenant in ``tenant_ids`` (``without``: a server being
    deleted, which routes nothing)."""
    ids = sorted(set(tenant_ids))
    stage_map: dict[str, dict[str, str | None]] = {t: {} for t in ids}
    account_map: dict[str, dict[str, tuple[str, str | None]]] = {t: {} for t in ids}
    defaults: dict[str, str | None] = dict.fromkeys(ids)
    names: dict[str, dict[str, str]] = {t: {} for t in ids}

    def live(server_id: str | None) -> str | None:
        return None if server_id == without else server_id

    for stage in await tx.execute(
        select(stages.c.tenant_id, stages.c.name, stages.c.mail_server_id).where(
            stages.c.tenant_id.in_(ids)
        )
    ):
        stage_map[stage.tenant_id][stage.name] = live(stage.mail_server_id)
    for account in await tx.execute(
        select(
            email_accounts.c.tenant_id,
            email_accounts.c.id,
            email_accounts.c.address,
            email_accounts.c.mail_server_id,
        ).where(email_accounts.c.tenant_id.in_(ids))
    ):
        account_map[account.tenant_id][account.id] = (
            account.address,
            live(account.mail_server_id),
        )
    for server in await tx.execute(
        select(
            mail_servers.c.tenant_id,
            mail_servers.c.id,
            mail_servers.c.name,
            mail_servers.c.is_default,
        ).where(mail_servers.c.tenant_id.in_(ids))
    ):
        if server.id == without:
            continue
        names[server.tenant_id][server.id] = server.name
        if server.is_default:
            defaults[server.tenant_id] = server.id
    return {t: TenantRouting(stage_map[t], account_map[t], defaults[t], names[t]) for t in ids}


async def record_reroutes(
    tx: Tx, moves: Sequence[tuple[str, int, AttemptRecord]], *, worker: str
) -> None:
    """Give claimed messages their new server (``record.server_id``) and write the note of
    each move to its delivery log, as attempt ``n`` (the attempt the move is part of)."""
    now = utcnow()
    for message_id, _, record in moves:
        await tx.execute(
            update(messages)
            .where(messages.c.id == message_id, messages.c.lease_owner == worker)
            .values(server_id=record.server_id, updated_at=now)
        )
    await tx.execute(
        insert(attempts),
        [
            {
                "id": new_id(),
                "message_id": message_id,
                "n": n,
                "started_at": record.started_at,
                "finished_at": record.finished_at,
                "server_id": record.server_id,
                "engine": record.engine,
                "worker": worker,
                "outcome": record.outcome,
                "code": record.code,
                "reply": record.reply,
                "tls_version": record.tls_version,
                "duration_ms": record.duration_ms,
                "possible_duplicate": record.possible_duplicate,
                "transcript": record.transcript,
            }
            for message_id, n, record in moves
        ],
    )
