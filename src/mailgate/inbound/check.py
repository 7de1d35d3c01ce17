"""The inbox test: every step of reaching an account's IMAP inbox, timed, without syncing.

``token (OAuth inboxes) → connect → tls (implicit TLS) → greeting → starttls (STARTTLS) →
login or authenticate (XOAUTH2) → select (EXAMINE, read-only)``, then LOGOUT. Nothing is
fetched or stored and no sync lease is taken, so a test may run while a sync does. The
report names each step reached with its duration; the first failing step is the last one,
marked failed, and the error says why and what to change (the same codes and hints as a
failing sync).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

from mailgate.domain.inbound import ImapAuth, ImapTarget
from mailgate.inbound.errors import ImapSyncError, Step, SyncErrorCode
from mailgate.inbound.sync import SyncOptions, TokenFactory, open_session
from mailgate.net.dialer import Dialer


@dataclass(frozen=True, slots=True)
class InboxStep:
    name: str
    ok: bool
    ms: float


@dataclass(frozen=True, slots=True)
class InboxReport:
    """What the test found; ``ok`` exactly when ``error`` is None."""

    auth: ImapAuth
    steps: tuple[InboxStep, ...]
    error: ImapSyncError | None
    folder: str
    messages: int | None = None
    uidvalidity: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Timer:
    """Collects the steps as they start; each ends when the next starts."""

    def __init__(self, auth: ImapAuth) -> None:
        self._auth = auth
        self._started: list[tuple[Step, float]] = []

    def __call__(self, step: Step) -> None:
        self._started.append((step, time.monotonic()))

    def steps(self, *, failed: bool) -> tuple[InboxStep, ...]:
        end = time.monotonic()
        out: list[InboxStep] = []
        for index, (step, start) in enumerate(self._started):
            last = index == len(self._started) - 1
            stop = end if last else self._started[index + 1][1]
            out.append(InboxStep(self._name(step), not (last and failed), (stop - start) * 1000))
        return tuple(out)

    def _name(self, step: Step) -> str:
        if step is Step.LOGIN and self._auth is ImapAuth.XOAUTH2:
            return "authenticate"
        return step.value


async def check_inbox(
    target: ImapTarget,
    *,
    dialer: Dialer,
    options: SyncOptions | None = None,
    tls: ssl.SSLContext | None = None,
    tokens: TokenFactory | None = None,
) -> InboxReport:
    """Reach ``target`` step by step and report; never raises :class:`ImapSyncError`."""
    options = options or SyncOptions()
    timer = _Timer(target.auth)
    try:
        async with asyncio.timeout(options.connect_timeout + 2 * options.timeout):
            session = await open_session(
                target, dialer=dialer, options=options, tls=tls, tokens=tokens, trace=timer
            )
            try:
                timer(Step.SELECT)
                status = await asyncio.to_thread(session.examine)
            finally:
                await asyncio.to_thread(session.close)
    except ImapSyncError as exc:
        return InboxReport(target.auth, timer.steps(failed=True), exc, target.folder)
    except TimeoutError as exc:
        error = ImapSyncError.of(
            SyncErrorCode.TIMEOUT,
            "The inbox test took too long and was stopped.",
            target,
        )
        error.__cause__ = exc
        return InboxReport(target.auth, timer.steps(failed=True), error, target.folder)
    return InboxReport(
        target.auth,
        timer.steps(failed=False),
        None,
        target.folder,
        messages=status.exists,
        uidvalidity=status.uidvalidity,
    )
