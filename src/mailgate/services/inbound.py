"""Inbound use-cases: sync an account's IMAP inbox now, test it, list what was ingested.

A manual sync runs the same pipeline as the scheduler (``mailgate.inbound.sync``) with the
instance network policy, and answers with its counts. What can go wrong maps to clear
errors: 404 for an account of another tenant, 422 when the account has no IMAP inbox or
no password, 429 with ``retry_after`` past the manual-sync rate limits
(:class:`~mailgate.services.ratelimit.SyncRateLimit`, checked before anything is dialled),
409 while another sync of the account runs (in any process), and 502 with an error code
and a hint when the IMAP server cannot be reached, fails TLS or refuses the login. The
password never appears in any of them.

The inbox test (:func:`check_inbox`) reaches the inbox step by step without syncing and
answers with a report (200 whether or not the inbox could be reached); it is rate limited
like a manual sync. OAuth inboxes (``imap.auth: xoauth2``) get a fresh access token from
the engines' OAuth token providers for each sync or test.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from mailgate import metrics
from mailgate.domain.inbound import ImapAuth, InboxItem, SyncCounts, imap_target
from mailgate.domain.model import EmailAccount
from mailgate.engines.oauth_imap import imap_tokens
from mailgate.errors import FieldError, RequestError, ValidationFailed
from mailgate.inbound import check as inbox_check
from mailgate.inbound.check import InboxReport
from mailgate.inbound.errors import ImapSyncError, SyncErrorCode
from mailgate.inbound.sync import SyncOptions, TokenFactory, sync_account
from mailgate.net.dialer import Dialer
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.runtime import InstancePolicy
from mailgate.services import trust
from mailgate.services.context import Caller, Context
from mailgate.services.ratelimit import RateLimit, principal_key
from mailgate.storage import inbound as store
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.inbound import InboundStore

DialerFactory = Callable[[InstancePolicy], Dialer]
TokensFactory = Callable[[Dialer], TokenFactory]


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
    tokens: TokensFactory = imap_tokens,
) -> SyncCounts:
    """Sync one account of the caller's tenant and return what the sync did.

    ``limiter`` admits the sync once the account is known to be syncable and before any
    connection is opened (``RateLimited`` otherwise); a refused or invalid request does not
    count. Without one the sync is not limited (the scheduler limits itself by interval).
    """
    async with ctx.db.read() as tx:
        account = await AccountRepo(tx, ctx.box, caller.tenant_id).get(account_id)
    _check_syncable(account, "sync")
    if limiter is not None:
        limiter.acquire(principal=principal_key(caller.principal), tenant=caller.tenant_id)
    inbox = InboundStore(ctx.db, ctx.box, tenant_id=caller.tenant_id, account_id=account_id)
    dial = dialer(ctx.policy)
    try:
        return await sync_account(
            inbox,
            dialer=dial,
            options=options or sync_options(ctx),
            tls=tls,
            tokens=tokens(dial),
        )
    except ImapSyncError as exc:
        if exc.code in (SyncErrorCode.NO_INBOX, SyncErrorCode.NO_PASSWORD, SyncErrorCode.NO_OAUTH):
            # The settings changed between the check above and the sync.
            raise ValidationFailed.field(exc.field, exc.message) from exc
        metrics.imap_sync_failed(caller.tenant_id)  # as the scheduler counts its failures
        raise SyncFailed(exc) from exc


def _check_syncable(account: EmailAccount, verb: str) -> None:
    """422 naming the field when the account's inbox lacks what a sync or test needs."""
    if account.imap is None:
        raise ValidationFailed(
            f"The email account {account.address!r} has no IMAP inbox; set its imap settings "
            f"(host, username, password or OAuth) to {verb} it.",
            errors=[FieldError("imap", "is not configured")],
        )
    if account.imap.auth == ImapAuth.XOAUTH2.value:
        if not account.imap.oauth:
            raise ValidationFailed.field(
                "imap.oauth", f"is not set; imap.auth xoauth2 needs it to {verb} the inbox"
            )
        return
    if "imap_password" not in account.secrets_set:
        raise ValidationFailed.field(
            "imap.password", f"is not set; set it on the account to {verb} its inbox"
        )


async def check_inbox(
    ctx: Context,
    caller: Caller,
    account_id: str,
    *,
    limiter: RateLimit | None = None,
    dialer: DialerFactory = guarded_dialer,
    options: SyncOptions | None = None,
    tls: ssl.SSLContext | None = None,
    tokens: TokensFactory = imap_tokens,
) -> InboxReport:
    """Reach the account's stored inbox step by step (token, connect, TLS, greeting,
    STARTTLS, login or XOAUTH2, select) and report; nothing is synced.

    422 when the account has no inbox or lacks its password or OAuth settings; 429 past
    the rate limits (counted with manual syncs). A failing step is part of the report.
    """
    async with ctx.db.read() as tx:
        repo = AccountRepo(tx, ctx.box, caller.tenant_id)
        account = await repo.get(account_id)
        _check_syncable(account, "test")
        secrets = await repo.secrets(account_id)
    assert account.imap is not None  # checked above
    plain = _plain(account)
    if account.imap.ca_keystore:
        plain["ca_certificates"] = await trust.trusted(
            ctx, caller.tenant_id, account.imap.ca_keystore
        )
    target = imap_target(account.address, plain, secrets)
    if target is None:
        raise ValidationFailed.field("imap.host", "is required")
    if limiter is not None:
        limiter.acquire(principal=principal_key(caller.principal), tenant=caller.tenant_id)
    dial = dialer(ctx.policy)
    return await inbox_check.check_inbox(
        target,
        dialer=dial,
        options=options or sync_options(ctx),
        tls=tls,
        tokens=tokens(dial),
    )


def _plain(account: EmailAccount) -> dict[str, object]:
    imap = account.imap
    assert imap is not None
    return {
        "host": imap.host,
        "port": imap.port,
        "security": imap.security,
        "username": imap.username,
        "folder": imap.folder,
        "auth": imap.auth,
        "oauth": imap.oauth,
        "ca_certificates": imap.ca_certificates,
    }


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
