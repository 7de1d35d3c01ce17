"""Inbound use-cases: sync an account's IMAP inbox now, list what was ingested.

A manual sync runs the same pipeline as the scheduler (``mailgate.inbound.sync``) with the
instance network policy, and answers with its counts. What can go wrong maps to clear
errors: 404 for an account of another tenant, 422 when the account has no IMAP inbox or
no password, 429 with ``retry_after`` past the manual-sync rate limits
(:class:`~mailgate.services.ratelimit.SyncRateLimit`, checked before anything is dialled),
409 while another sync of the account runs (in any process), and 502 with an error code
and a hint when the IMAP server cannot be reached, fails TLS or refuses the login. The
password never appears in any of them.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from mailgate.domain.inbound import InboxItem, SyncCounts
from mailgate.errors import FieldError, RequestError, ValidationFailed
from mailgate.inbound.errors import ImapSyncError, SyncErrorCode
from mailgate.inbound.sync import SyncOptions, sync_account
from mailgate.net.dialer import Dialer
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.runtime import InstancePolicy
from mailgate.services.context import Caller, Context
from mailgate.services.ratelimit import RateLimit, principal_key
from mailgate.storage import inbound as store
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.inbound import InboundStore

DialerFactory = Callable[[InstancePolicy], Dialer]


def guarded_dialer(policy: InstancePolicy) -> Dialer:
    """The instance network policy's dialer: resolve, check, pin (SPEC.md section 8)."""
    return GuardedDialer(NetworkPolicy(policy.allowed_networks, allow_port_25=policy.allow_port_25))


class SyncFailed(RequestError):
    """502: the IMAP server could not be read; ``code`` and ``hint`` say why and what to do."""

    status = 502
    title = "IMAP sync failed"

    def __init__(self, error: ImapSyncError) -> None:
        super().__init__(
            f"{error.message} Hint: {error.hint}",
            errors=[FieldError(error.field, error.message)],
        )
        self.code = error.code.value
        self.hint = error.hint


async def sync_now(
    ctx: Context,
    caller: Caller,
    account_id: str,
    *,
    limiter: RateLimit | None = None,
    dialer: DialerFactory = guarded_dialer,
    options: SyncOptions | None = None,
    tls: ssl.SSLContext | None = None,
) -> SyncCounts:
    """Sync one account of the caller's tenant and return what the sync did.

    ``limiter`` admits the sync once the account is known to be syncable and before any
    connection is opened (``RateLimited`` otherwise); a refused or invalid request does not
    count. Without one the sync is not limited (the scheduler limits itself by interval).
    """
    async with ctx.db.read() as tx:
        account = await AccountRepo(tx, ctx.box, caller.tenant_id).get(account_id)
    if account.imap is None:
        raise ValidationFailed(
            f"The email account {account.address!r} has no IMAP inbox; set its imap settings "
            "(host, username, password) to sync it.",
            errors=[FieldError("imap", "is not configured")],
        )
    if "imap_password" not in account.secrets_set:
        raise ValidationFailed.field(
            "imap.password", "is not set; set it on the account to sync its inbox"
        )
    if limiter is not None:
        limiter.acquire(principal=principal_key(caller.principal), tenant=caller.tenant_id)
    inbox = InboundStore(ctx.db, ctx.box, tenant_id=caller.tenant_id, account_id=account_id)
    try:
        return await sync_account(
            inbox, dialer=dialer(ctx.policy), options=options or sync_options(ctx), tls=tls
        )
    except ImapSyncError as exc:
        if exc.code in (SyncErrorCode.NO_INBOX, SyncErrorCode.NO_PASSWORD):
            # The settings changed between the check above and the sync.
            raise ValidationFailed.field(exc.field, exc.message) from exc
        raise SyncFailed(exc) from exc


def sync_options(ctx: Context) -> SyncOptions:
    """Sync limits from the instance policy (the message size limit)."""
    return SyncOptions(max_bytes=ctx.policy.max_message_bytes)


async def list_inbox(
    ctx: Context,
    caller: Caller,
    account_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    bounces_only: bool = False,
) -> tuple[list[InboxItem], str | None]:
    """One page of the account's ingested messages, newest first, and the next cursor."""
    async with ctx.db.read() as tx:
        await AccountRepo(tx, ctx.box, caller.tenant_id).get(account_id)
        items = await store.list_inbox(
            tx,
            caller.tenant_id,
            account_id,
            limit=limit + 1,
            before=cursor,
            bounces_only=bounces_only,
        )
    more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].id if more and items else None)


async def inbox_raw(ctx: Context, caller: Caller, account_id: str, item_id: str) -> bytes:
    """The bytes of one ingested message (its header only when it was truncated)."""
    async with ctx.db.read() as tx:
        await AccountRepo(tx, ctx.box, caller.tenant_id).get(account_id)
        return await store.raw_of(tx, caller.tenant_id, account_id, item_id)
