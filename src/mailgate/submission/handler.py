"""The aiosmtpd handler of the submission server: AUTH, MAIL, RCPT, DATA.

* AUTH PLAIN and LOGIN (RFC 4616, the LOGIN draft): the username is the tenant slug, the
  password a Mailgate API token with the permission ``email:send``. The token is checked
  exactly as a REST bearer token is (:func:`mailgate.services.auth.authenticate`); a token
  of another tenant gets the same ``535`` as a wrong one. The token is kept in memory for
  the session, never logged nor echoed, and checked again at every MAIL FROM, so a revoked
  token stops working on connections that were open before.
* MAIL FROM needs a successful AUTH; its address must pass the strict address parser.
* RCPT TO: strict address; beyond the instance's ``max_recipients`` the reply is
  ``452 4.5.3`` (RFC 5321 section 4.5.3.1.10), so a client can send the rest in a new
  transaction. A suppressed address gets ``550 5.7.1`` naming the suppression entry
  (docs/deliverability.md); so does DATA when every recipient left after the test-list
  redirection is suppressed.
* DATA hands the message to :func:`mailgate.services.submit_raw.submit_raw` and answers
  ``250`` with the Mailgate message id only after the message is committed. The commit runs
  in its own task, shielded: a client that hangs up mid-commit cannot leave a half-written
  transaction behind, and ``stop`` waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Final

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session, TLSSetupException

from mailgate.compose import parse_address
from mailgate.domain.roles import Permission
from mailgate.errors import (
    ConfigurationError,
    NotFound,
    PermissionDenied,
    RequestError,
    Unauthenticated,
    ValidationFailed,
)
from mailgate.services import auth, suppressions
from mailgate.services.context import Caller, Context
from mailgate.services.send import Accepted
from mailgate.services.submit_raw import Envelope as SubmittedEnvelope
from mailgate.services.submit_raw import Trace, submit_raw
from mailgate.submission import replies

log = logging.getLogger("mailgate.submission")

# An EHLO name fit for a Received field: a domain or an address literal (RFC 5321 4.1.3).
_HELO: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253})|\[[A-Za-z0-9.:]{1,60}\]")


@dataclass(slots=True)
class Login:
    """Who authenticated on a connection (aiosmtpd keeps it as the session's auth data);
    ``caller`` is refreshed at every MAIL FROM."""

    caller: Caller
    slug: str
    token: str = field(repr=False)


def _login_of(session: Session) -> Login | None:
    data = session.auth_data if session.authenticated else None
    return data if isinstance(data, Login) else None


def _peer_ip(session: Session | None) -> str | None:
    peer = session.peer if session is not None else None
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


def _retrieve(task: asyncio.Task[Any]) -> None:
    # The client may have gone while the commit ran: nobody else reads its outcome.
    if not task.cancelled():
        task.exception()


class SubmissionHandler:
    """One per listener; aiosmtpd calls its ``auth_*`` and ``handle_*`` hooks."""

    def __init__(self, ctx: Context, *, hostname: str) -> None:
        self._ctx = ctx
        self._hostname = hostname
        self._commits: set[asyncio.Task[Accepted]] = set()

    # -- AUTH -----------------------------------------------------------------------

    async def _response(self, server: SMTP, args: list[str], challenge: str) -> bytes | None:
        """The client's (initial or challenged) response, or None when the exchange
        ended (aiosmtpd has already replied)."""
        if len(args) == 2:
            if args[1] == "=":  # RFC 4954 section 4: an empty initial response
                return b""
            try:
                return base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode the base64 response")
                return None
        answer = await server.challenge_auth(challenge)
        return None if answer is MISSING else bytes(answer)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await self._response(server, args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            return AuthResult(
                success=False, handled=False, message="501 5.5.2 Malformed PLAIN response"
            )
        authzid, username, password = parts
        if authzid and authzid != username:
            # RFC 4616 section 2: acting as another identity is not supported.
            return AuthResult(success=False, handled=False, message=replies.AUTH_INVALID)
        return await self._login(server, username, password)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        username = await self._response(server, args, "Username:")
        if username is None:
            return AuthResult(success=False, handled=True)
        password = await self._response(server, args[:1], "Password:")
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._login(server, username, password)

    async def _authorize(self, slug: str, token: str) -> Caller:
        principal = await auth.authenticate(self._ctx, token)
        return await auth.authorize(self._ctx, principal, slug, Permission.SEND_EMAIL)

    async def _login(self, server: SMTP, username: bytes, password: bytes) -> AuthResult:
        peer = _peer_ip(server.session)
        try:
            slug, token = username.decode(), password.decode()
            caller = await self._authorize(slug, token)
        except PermissionDenied:
            log.info("SMTP AUTH refused from %s: the token lacks email:send", peer)
            message = replies.reply(
                535, "5.7.8", f"this token lacks the permission {Permission.SEND_EMAIL.value!r}"
            )
            return AuthResult(success=False, handled=False, message=message)
        except (UnicodeDecodeError, Unauthenticated, NotFound):
            log.info("SMTP AUTH refused from %s: invalid credentials", peer)
            return AuthResult(success=False, handled=False, message=replies.AUTH_INVALID)
        except Exception:
            log.exception("SMTP AUTH from %s could not be checked", peer)
            return AuthResult(success=False, handled=False, message=replies.AUTH_TEMPORARY)
        log.info("SMTP AUTH from %s as %s in tenant %s", peer, caller.actor, slug)
        return AuthResult(success=True, auth_data=Login(caller=caller, slug=slug, token=token))

    # -- MAIL, RCPT, DATA -----------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        login = _login_of(session)
        if login is None:
            return replies.AUTH_REQUIRED
        try:
            # A token revoked (or a role lowered) since AUTH stops here.
            caller = await self._authorize(login.slug, login.token)
        except RequestError:
            session.authenticated, session.auth_data = False, None
            return f"{replies.AUTH_REQUIRED}: the credentials are no longer valid"
        login.caller = caller
        if address in {"", "<>"}:
            # RFC 5321 section 4.5.5: the null reverse path is for notifications (bounces).
            return replies.reply(553, "5.1.7", "MAIL FROM:<> is for bounces; give a sender")
        try:
            parse_address(address, field="MAIL FROM")
        except ValidationFailed as exc:
            return replies.for_error(exc)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        limit = self._ctx.policy.max_recipients
        if len(envelope.rcpt_tos) >= limit:
            return replies.reply(452, "4.5.3", f"Too many recipients: at most {limit} a message")
        try:
            parse_address(address, field="RCPT TO")
        except ValidationFailed as exc:
            return replies.reply(553, "5.1.3", f"RCPT TO: {exc.errors[0].message}")
        login = _login_of(session)
        if login is not None:
            entry = await suppressions.check_rcpt(self._ctx, login.caller, address)
            if entry is not None:
                return replies.reply(550, "5.7.1", f"{address} is {entry.describe()}")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient ok"

    def _trace(self, session: Session) -> Trace:
        helo = session.host_name or ""
        return Trace(
            helo=helo if _HELO.fullmatch(helo) else "unknown",
            peer=_peer_ip(session),
            by=self._hostname,
            protocol="ESMTPSA" if session.ssl is not None else "ESMTPA",
        )

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = _login_of(session)
        if login is None or envelope.mail_from is None:
            return replies.AUTH_REQUIRED
        submitted = SubmittedEnvelope(
            mail_from=envelope.mail_from, rcpt_to=tuple(envelope.rcpt_tos)
        )
        data = envelope.original_content or b""
        task = asyncio.create_task(
            submit_raw(self._ctx, login.caller, submitted, data, trace=self._trace(session))
        )
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)
        task.add_done_callback(_retrieve)
        peer = _peer_ip(session)
        try:
            accepted = await asyncio.shield(task)
        except suppressions.Suppressed as exc:
            log.info("SMTP message from %s refused: every recipient is suppressed", peer)
            return replies.reply(550, "5.7.1", [e.message for e in exc.errors])
        except RequestError as exc:
            log.info("SMTP message from %s refused: %s", peer, exc.detail)
            return replies.for_error(exc)
        except ConfigurationError:
            log.exception("SMTP message from %s not queued: misconfiguration", peer)
            return replies.MISCONFIGURED
        except Exception:
            log.exception("SMTP message from %s not queued", peer)
            return replies.TEMPORARY
        log.info(
            "SMTP message %s from %s queued for tenant %s (%d recipients)",
            accepted.id,
            peer,
            login.slug,
            len(submitted.rcpt_to),
        )
        return f"250 2.0.0 Ok: queued as {accepted.id}"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client that gives up on our certificate, or a scanner: not Mailgate's fault.
            log.info("SMTP STARTTLS handshake failed: %s", error.__cause__ or error)
        else:
            log.error("SMTP submission error: %s", type(error).__name__, exc_info=error)
        return replies.TEMPORARY

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for messages being committed."""
        pending = set(self._commits)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
