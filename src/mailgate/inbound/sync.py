"""One sync of one account's inbox, as named steps.

``begin (lease + inbox settings) → token (OAuth inboxes) → dial (network policy, pinned
address) → open (TLS or STARTTLS, LOGIN or AUTHENTICATE XOAUTH2) → examine → new UIDs →
fetch in batches → parse (headers, bounces) → save (messages + bounces + cursor, one
transaction per batch) → finish (release the lease, stamp the account)``.

The pipeline knows neither the database nor the network policy: it drives a
:class:`SyncStore` (storage implements it) and a :class:`~mailgate.net.dialer.Dialer` (the
guarded dialer of :mod:`mailgate.net` in production), both handed in by the caller, the
manual-sync service or the scheduler. OAuth inboxes get their access token from a
:data:`TokenFactory`, handed in too (the engines' OAuth token providers, wrapped by the
caller): a fresh token per sync.

Nothing is ingested twice: a batch and the cursor that covers it are saved together, so a
sync that dies half-way resumes after the last saved batch; when the server reports a new
UIDVALIDITY, the mailbox is read again from its first UID and the store drops what it
already holds (RFC 9051 section 2.3.1.1).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailgate.domain.ids import new_id
from mailgate.domain.inbound import (
    BatchResult,
    ImapAuth,
    ImapTarget,
    InboundBatch,
    InboundMessage,
    MailboxCursor,
    SyncCounts,
)
from mailgate.errors import ConfigurationError
from mailgate.inbound.errors import ImapSyncError, Step, SyncErrorCode, translate
from mailgate.inbound.parse import to_inbound
from mailgate.inbound.session import ImapSession, Trace
from mailgate.net.dialer import Dialer


class Revealable(Protocol):
    """A secret value (``engines.config.Secret``)."""

    def reveal(self) -> str: ...


class TokenSource(Protocol):
    """Access tokens of one inbox (``engines.oauth.tokens.OAuthTokenSource`` satisfies it).

    ``access_token`` raises ``ConfigurationError`` when the provider refuses the
    credentials and ``OSError`` when no token can be had now.
    """

    async def access_token(self) -> Revealable: ...

    async def aclose(self) -> None: ...


#: Builds the token source of an OAuth inbox; raises ``ConfigurationError`` for settings
#: that cannot work (a missing client id, a service-account key that is not one...).
TokenFactory = Callable[[ImapTarget], TokenSource]


class SyncStore(Protocol):
    """What the pipeline reads and writes; ``mailgate.storage.inbound.InboundStore``."""

    async def begin(self, holder: str) -> ImapTarget | None: ...

    async def cursor(self, mailbox: str) -> MailboxCursor | None: ...

    async def save(self, holder: str, batch: InboundBatch) -> BatchResult: ...

    async def finish(self, holder: str, *, error: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Limits of one sync. Messages beyond ``max_messages`` wait for the next sync."""

    connect_timeout: float = 15.0
    #: Every socket read and write of the IMAP session.
    timeout: float = 60.0
    #: The whole sync: a server that answers, but a byte at a time, is stopped here.
    deadline: float = 600.0
    batch_size: int = 50
    max_messages: int = 1000
    #: Larger messages are stored as their header only (``truncated``).
    max_bytes: int = 25 * 1024 * 1024


async def sync_account(
    store: SyncStore,
    *,
    dialer: Dialer,
    options: SyncOptions | None = None,
    tls: ssl.SSLContext | None = None,
    tokens: TokenFactory | None = None,
) -> SyncCounts:
    """Read what is new in the account's inbox into ``store``.

    Raises ``Conflict`` (from the store) while another sync holds the account,
    :class:`ImapSyncError` when the inbox cannot be read; the account records the error
    either way. ``tls`` replaces the default verifying context; ``tokens`` serves inboxes
    whose ``auth`` is xoauth2.
    """
    options = options or SyncOptions()
    holder = new_id()
    target = await store.begin(holder)
    if target is None:
        raise ImapSyncError.of(
            SyncErrorCode.NO_INBOX, "This email account has no IMAP inbox configured.", None
        )
    error: str | None = None
    limit = asyncio.timeout(options.deadline)
    try:
        try:
            async with limit:
                return await _sync(
                    store, holder, target, dialer=dialer, options=options, tls=tls, tokens=tokens
                )
        except TimeoutError as exc:
            if not limit.expired():
                raise
            raise ImapSyncError.of(
                SyncErrorCode.TIMEOUT,
                f"The sync took longer than {options.deadline:g} s and was stopped; what it "
                "had stored is kept and the next sync carries on from there.",
                target,
            ) from exc
    except ImapSyncError as exc:
        error = exc.summary()
        raise
    except BaseException as exc:
        error = f"internal error: {type(exc).__name__}"
        raise
    finally:
        await store.finish(holder, error=error)


async def fetch_token(target: ImapTarget, tokens: TokenFactory | None) -> str:
    """A fresh access token for an OAuth inbox; :class:`ImapSyncError` when none can be had
    (``no_oauth``, ``oauth_refused`` or ``token_unavailable``)."""
    if target.oauth is None or tokens is None:
        raise ImapSyncError.of(
            SyncErrorCode.NO_OAUTH,
            "This inbox authenticates with OAuth (imap.auth xoauth2) but has no imap.oauth "
            "settings.",
            target,
        )
    try:
        source = tokens(target)
    except ConfigurationError as exc:
        raise ImapSyncError.of(SyncErrorCode.NO_OAUTH, str(exc), target) from None
    try:
        return (await source.access_token()).reveal()
    except ConfigurationError as exc:
        raise ImapSyncError.of(SyncErrorCode.OAUTH_REFUSED, str(exc), target) from None
    except OSError as exc:
        raise ImapSyncError.of(SyncErrorCode.TOKEN_UNAVAILABLE, str(exc), target) from None
    finally:
        await source.aclose()


async def open_session(
    target: ImapTarget,
    *,
    dialer: Dialer,
    options: SyncOptions,
    tls: ssl.SSLContext | None,
    tokens: TokenFactory | None,
    trace: Trace | None = None,
) -> ImapSession:
    """Token (OAuth inboxes), dial and open: a logged-in session on ``target``.

    ``trace`` is told of each step as it starts (see ``mailgate.inbound.check``).
    """
    token: str | None = None
    if target.auth is ImapAuth.XOAUTH2:
        if trace is not None:
            trace(Step.TOKEN)
        token = await fetch_token(target, tokens)
    elif not target.password:
        raise ImapSyncError.of(
            SyncErrorCode.NO_PASSWORD, "No IMAP password is set for this account.", target
        )
    if trace is not None:
        trace(Step.CONNECT)
    try:
        sock = await dialer.connect(target.host, target.port, timeout=options.connect_timeout)
    except Exception as exc:
        error = translate(exc, Step.CONNECT, target)
        if error is None:
            raise
        raise error from exc
    return await asyncio.to_thread(
        ImapSession.open,
        sock,
        target,
        timeout=options.timeout,
        context=tls,
        max_bytes=options.max_bytes,
        token=token,
        trace=trace,
    )


def _fetch(session: ImapSession, uids: Sequence[int], max_bytes: int) -> list[InboundMessage]:
    return [to_inbound(mail) for mail in session.fetch(uids, max_bytes=max_bytes)]


async def _sync(
    store: SyncStore,
    holder: str,
    target: ImapTarget,
    *,
    dialer: Dialer,
    options: SyncOptions,
    tls: ssl.SSLContext | None,
    tokens: TokenFactory | None,
) -> SyncCounts:
    session = await open_session(target, dialer=dialer, options=options, tls=tls, tokens=tokens)
    try:
        status = await asyncio.to_thread(session.examine)
        cursor = await store.cursor(target.folder)
        changed = cursor is not None and cursor.uidvalidity != status.uidvalidity
        last = cursor.last_uid if cursor is not None and not changed else 0
        counts = SyncCounts(
            mailbox=target.folder, uidvalidity=status.uidvalidity, uidvalidity_changed=changed
        )
        nothing_new = status.exists == 0 or (
            status.uidnext is not None and status.uidnext <= last + 1
        )
        uids = [] if nothing_new else await asyncio.to_thread(session.uids_after, last)
        uids = uids[: options.max_messages]
        if not uids:
            if cursor is None or changed:
                here = MailboxCursor(target.folder, status.uidvalidity, last)
                await store.save(holder, InboundBatch(cursor=here, messages=()))
            return counts
        for start in range(0, len(uids), options.batch_size):
            chunk = uids[start : start + options.batch_size]
            fetched = await asyncio.to_thread(_fetch, session, chunk, options.max_bytes)
            batch = InboundBatch(
                cursor=MailboxCursor(target.folder, status.uidvalidity, chunk[-1]),
                messages=tuple(fetched),
                uidvalidity_changed=changed,
            )
            counts = counts.plus(await store.save(holder, batch), fetched=len(fetched))
        return counts
    finally:
        await asyncio.to_thread(session.close)
