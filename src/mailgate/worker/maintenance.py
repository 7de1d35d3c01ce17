"""Housekeeping: purge final and ingested mail past its retention, forget old
idempotency keys and the previous webhook secrets whose rotation overlap has ended.

The instance retention (``MAILGATE_RETENTION_DAYS``, :attr:`InstancePolicy.retention_days`)
applies to every final status — sent, failed, cancelled, and sent with a bounced recipient —
and to messages ingested from IMAP inboxes, unless a tenant's policy sets its own days for a
status (``PATCH /tenants/{t}/policy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from mailgate.domain.policies import RETENTION_STATUSES, TenantPolicy
from mailgate.runtime import Context
from mailgate.storage import idempotency
from mailgate.storage import inbound as inbound_store
from mailgate.storage import messages as message_store
from mailgate.storage import policies as policy_store
from mailgate.storage import webhooks as webhook_store
from mailgate.storage.base import utcnow

log = logging.getLogger("mailgate.maintenance")

INTERVAL_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Purged:
    """What one housekeeping pass deleted."""

    #: Final messages finished before their retention (with recipients, attempts and body).
    messages: int
    #: Messages ingested from IMAP inboxes before the retention.
    inbound: int
    #: Expired idempotency keys.
    idempotency_keys: int
    #: Webhooks whose previous secret (after a rotation) was dropped: its overlap ended.
    webhook_secrets: int = 0


async def purge_once(ctx: Context) -> Purged:
    """Delete final and ingested messages older than their retention, expired idempotency
    keys and previous webhook secrets past their overlap, in one transaction."""
    now = utcnow()
    days = ctx.policy.retention_days
    horizon = now - timedelta(days=days)
    async with ctx.db.transaction() as tx:
        overrides = await policy_store.retention_overrides(tx)
        purged_messages = await message_store.purge_final(
            tx, dict.fromkeys(RETENTION_STATUSES, horizon), except_tenants=overrides.keys()
        )
        for tenant_id, own in overrides.items():
            effective = TenantPolicy(retention_days=own).effective_retention(days)
            horizons = {s: now - timedelta(days=d) for s, d in effective.items()}
            purged_messages += await message_store.purge_final(tx, horizons, tenant_ids=[tenant_id])
        purged = Purged(
            messages=purged_messages,
            inbound=await inbound_store.purge_ingested(tx, older_than=horizon),
            idempotency_keys=await idempotency.purge(tx, now=now),
            webhook_secrets=await webhook_store.forget_expired_previous(tx, ctx.box, now=now),
        )
    if purged.messages or purged.inbound or purged.idempotency_keys:
        log.info(
            "purged %d final message(s), %d ingested message(s) and %d idempotency key(s)",
            purged.messages,
            purged.inbound,
            purged.idempotency_keys,
        )
    return purged


async def run(ctx: Context, stop: asyncio.Event, *, interval: float = INTERVAL_SECONDS) -> None:
    while not stop.is_set():
        try:
            await purge_once(ctx)
        except Exception:
            log.exception("housekeeping failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
