"""One IMAP session over a socket the caller has already connected (and pinned).

The network policy lives below the protocol: the caller's dialer resolves the host, checks
every address and connects to the checked one (no DNS-rebinding bypass). This module then
speaks IMAP (``imapclient`` over ``imaplib``) on that very socket, and TLS still verifies
the *configured* host name (``server_hostname=target.host``), never the address.

* ``tls``: the TLS handshake comes first (implicit TLS, RFC 8314 section 3.2);
* ``starttls``: STARTTLS is mandatory before LOGIN (RFC 9051 section 6.2.1): a server that
  does not offer it is an error, never a reason to log in in plain text.

Authentication is LOGIN with the account's password, or, with an OAuth access token,
``AUTHENTICATE XOAUTH2`` (developers.google.com/gmail/imap/xoauth2-protocol; Exchange
Online refuses password logins). The initial response is
``base64("user=" user ^A "auth=Bearer " token ^A ^A)``; a refused token comes back as a
continuation carrying a JSON error, answered with an empty line, then ``NO``.

The mailbox is opened read-only (EXAMINE), and bodies are fetched with ``BODY.PEEK[]``, so
syncing never changes the ``\\Seen`` flag or anything else in the user's mailbox.

A literal (``{n}``) longer than the sync's size limit is refused before any of it is read:
``imaplib`` would otherwise allocate and read whatever length a server announces, whatever
``RFC822.SIZE`` said before.

``imaplib`` is blocking: the methods here are plain functions that the sync runs in a
worker thread, one session per thread at a time. Every socket operation is bounded by
``timeout``.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imapclient import IMAPClient

from mailgate.domain.inbound import ImapAuth, ImapSecurity, ImapTarget
from mailgate.inbound.errors import ImapSyncError, Step, SyncErrorCode, translate
from mailgate.net.tls import VerifiedTls, client_context

#: The longest literal read by default (the default ``SyncOptions.max_bytes``).
MAX_LITERAL = 25 * 1024 * 1024
#: What a literal may exceed the size limit by (a server's RFC822.SIZE may be a little off).
LITERAL_SLACK = 64 * 1024

#: Called with each step as it starts (the connection test times the steps with it).
Trace = Callable[[Step], None]


class _Progress:
    """The step reached so far, reported to ``trace`` as each one starts."""

    def __init__(self, first: Step, trace: Trace | None) -> None:
        self._trace = trace
        self.step = first
        if trace is not None:
            trace(first)

    def enter(self, step: Step) -> None:
        self.step = step
        if self._trace is not None:
            self._trace(step)


class _PinnedIMAP4(imaplib.IMAP4):
    """``imaplib.IMAP4`` on an already connected socket; implicit TLS when ``tls`` is set."""

    def __init__(
        self,
        sock: socket.socket,
        host: str,
        *,
        tls: ssl.SSLContext | None,
        timeout: float,
        progress: _Progress,
        target: ImapTarget,
        max_literal: int,
    ) -> None:
        self._pinned = sock
        self._tls = tls
        self._progress = progress
        self._target = target
        self._max_literal = max_literal
        super().__init__(host, 0, timeout=timeout)

    def read(self, size: int) -> bytes:
        """A literal of ``size`` octets (imaplib reads literals only through here)."""
        if size > self._max_literal:
            raise ImapSyncError.of(
                SyncErrorCode.PROTOCOL_ERROR,
                f"The server sent a literal of {size} octets, more than the "
                f"{self._max_literal} allowed.",
                self._target,
            )
        return super().read(size)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = self._pinned
        sock.setblocking(True)
        sock.settimeout(timeout)
        if self._tls is None:
            return sock
        # The configured host name, not the pinned address, is what the certificate proves.
        wrapped = self._tls.wrap_socket(sock, server_hostname=self.host)
        self._progress.enter(Step.GREETING)
        return wrapped


class _Client(IMAPClient):  # type: ignore[misc]
    """``IMAPClient`` driving a prepared ``imaplib`` connection instead of opening its own."""

    def __init__(self, imap: imaplib.IMAP4, host: str, *, tls: bool, timeout: float) -> None:
        self._prepared = imap
        super().__init__(host, port=993 if tls else 143, ssl=tls, timeout=timeout)

    def _create_IMAP4(self) -> imaplib.IMAP4:
        return self._prepared


def tls_context(ca_certificates: str | None = None) -> ssl.SSLContext:
    """A verifying client context: system trust store, host-name check, TLS 1.2 or newer;
    ``ca_certificates`` (PEM) are trusted as well, in this context only."""
    return client_context(VerifiedTls(ca_certificates=ca_certificates or None))


def xoauth2_initial_response(user: str, token: str) -> bytes:
    """The XOAUTH2 initial client response, before base64 (imaplib encodes it)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


class _XOAuth2Responder:
    """Answers AUTHENTICATE XOAUTH2: the bearer string first, then an empty line to the
    error continuation of a refused token (so the server ends with ``NO``)."""

    def __init__(self, user: str, token: str) -> None:
        self._first: bytes | None = xoauth2_initial_response(user, token)

    def __call__(self, challenge: bytes) -> bytes:
        first, self._first = self._first, None
        return first if first is not None else b""


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """What EXAMINE reports about the mailbox (RFC 9051 section 7.3)."""

    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class FetchedMail:
    """One message as the server returned it; ``raw`` is only the header when truncated."""

    uid: int
    size: int
    internal_date: datetime | None
    raw: bytes
    truncated: bool


class ImapSession:
    """A logged-in IMAP session; construct with :meth:`open`, end with :meth:`close`."""

    def __init__(self, client: Any, target: ImapTarget) -> None:
        self._client = client
        self.target = target
        # One command at a time: a sync whose task is cancelled closes the session from
        # another thread while a command may still be running (see :meth:`close`).
        self._busy = threading.Lock()

    @classmethod
    def open(
        cls,
        sock: socket.socket,
        target: ImapTarget,
        *,
        timeout: float,
        context: ssl.SSLContext | None = None,
        max_bytes: int = MAX_LITERAL,
        token: str | None = None,
        trace: Trace | None = None,
    ) -> ImapSession:
        """TLS (or STARTTLS), greeting and LOGIN (or AUTHENTICATE XOAUTH2 with ``token``,
        required when the target's ``auth`` is xoauth2) on ``sock``; closes ``sock`` on
        failure. No literal longer than ``max_bytes`` (and a little slack) is read."""
        implicit = target.security is ImapSecurity.TLS
        # The step reached so far: imaplib reads the greeting and asks for CAPABILITY while
        # it sets the connection up, after the TLS handshake of implicit TLS.
        progress = _Progress(Step.TLS if implicit else Step.GREETING, trace)
        client: Any = None
        try:
            context = context or tls_context(target.ca_certificates)
            imap = _PinnedIMAP4(
                sock,
                target.host,
                tls=context if implicit else None,
                timeout=timeout,
                progress=progress,
                target=target,
                max_literal=max_bytes + LITERAL_SLACK,
            )
            client = _Client(imap, target.host, tls=implicit, timeout=timeout)
            client.normalise_times = False  # keep INTERNALDATE's own offset
            if not implicit:
                progress.enter(Step.STARTTLS)
                client.starttls(context)
            progress.enter(Step.LOGIN)
            if target.auth is ImapAuth.XOAUTH2:
                _authenticate_xoauth2(client, target, token)
            else:
                client.login(target.username, target.password)
        except Exception as exc:
            _discard(client, sock)
            error = translate(exc, progress.step, target)
            if error is None:
                raise
            raise error from exc
        return cls(client, target)

    def _call(self, step: Step, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._busy:
                return getattr(self._client, method)(*args, **kwargs)
        except Exception as exc:
            error = translate(exc, step, self.target)
            if error is None:
                raise
            raise error from exc

    def examine(self) -> MailboxStatus:
        """Open the configured folder read-only."""
        info = self._call(Step.SELECT, "select_folder", self.target.folder, readonly=True)
        if b"UIDVALIDITY" not in info:
            raise ImapSyncError.of(
                SyncErrorCode.PROTOCOL_ERROR,
                f"The server reported no UIDVALIDITY for {self.target.folder!r}.",
                self.target,
            )
        uidnext = info.get(b"UIDNEXT")
        return MailboxStatus(
            uidvalidity=int(info[b"UIDVALIDITY"]),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(info.get(b"EXISTS", 0)),
        )

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than ``last_uid``, ascending.

        ``UID n:*`` always matches the highest UID even when it is below ``n`` (RFC 9051
        section 6.4.9), hence the filter.
        """
        found = self._call(Step.FETCH, "search", ["UID", f"{last_uid + 1}:*"])
        return sorted(int(uid) for uid in found if int(uid) > last_uid)

    def fetch(self, uids: Sequence[int], *, max_bytes: int) -> list[FetchedMail]:
        """The messages ``uids`` (those the server still has); a message larger than
        ``max_bytes`` comes back as its header only, marked truncated."""
        if not uids:
            return []
        meta = self._call(Step.FETCH, "fetch", list(uids), ["RFC822.SIZE", "INTERNALDATE"])
        small = [u for u in uids if u in meta and int(meta[u].get(b"RFC822.SIZE", 0)) <= max_bytes]
        large = [u for u in uids if u in meta and u not in small]
        bodies: dict[int, bytes] = {}
        if small:
            got = self._call(Step.FETCH, "fetch", small, ["BODY.PEEK[]"])
            bodies.update({u: bytes(got[u].get(b"BODY[]") or b"") for u in small if u in got})
        if large:
            got = self._call(Step.FETCH, "fetch", large, ["BODY.PEEK[HEADER]"])
            bodies.update({u: bytes(got[u].get(b"BODY[HEADER]") or b"") for u in large if u in got})
        out: list[FetchedMail] = []
        for uid in uids:
            if uid not in bodies:
                continue  # expunged meanwhile
            when = meta[uid].get(b"INTERNALDATE")
            out.append(
                FetchedMail(
                    uid=uid,
                    size=int(meta[uid].get(b"RFC822.SIZE", len(bodies[uid]))),
                    internal_date=when if isinstance(when, datetime) else None,
                    raw=bodies[uid],
                    truncated=uid in large,
                )
            )
        return out

    def close(self) -> None:
        """LOGOUT; a connection that is already broken is just closed.

        A command still running in another thread is cut short by shutting the socket
        down, instead of waiting for its timeout.
        """
        if not self._busy.acquire(blocking=False):
            with contextlib.suppress(OSError):
                self._client.socket().shutdown(socket.SHUT_RDWR)
            self._busy.acquire()
        try:
            _discard(self._client, None, logout=True)
        finally:
            self._busy.release()


def _authenticate_xoauth2(client: Any, target: ImapTarget, token: str | None) -> None:
    if not token:
        raise ImapSyncError.of(
            SyncErrorCode.NO_OAUTH, "No access token was obtained for this inbox.", target
        )
    offered = {bytes(c).upper() for c in client.capabilities()}
    if b"AUTH=XOAUTH2" not in offered:
        raise ImapSyncError.of(
            SyncErrorCode.AUTH_FAILED,
            f"{target.host} does not offer AUTHENTICATE XOAUTH2 (capabilities: "
            f"{b' '.join(sorted(offered)).decode('ascii', 'replace')}).",
            target,
        )
    try:
        client._imap.authenticate("XOAUTH2", _XOAuth2Responder(target.username, token))
    except imaplib.IMAP4.abort:
        raise  # the connection broke: CONNECTION_LOST, not a refusal
    except imaplib.IMAP4.error as exc:
        reply = str(exc).replace(token, "***")
        raise ImapSyncError.of(
            SyncErrorCode.AUTH_FAILED,
            f"The IMAP server refused the access token for {target.username!r}: {reply}",
            target,
        ) from None


def _discard(client: Any, sock: socket.socket | None, *, logout: bool = False) -> None:
    """End the session however it stands: LOGOUT when asked and possible, else close."""
    if client is not None:
        try:
            if logout:
                client.logout()
            else:
                client.shutdown()
        except Exception:
            # The connection is already broken; closing it is all that is left to do.
            with contextlib.suppress(Exception):
                client.shutdown()
    if sock is not None:
        sock.close()
