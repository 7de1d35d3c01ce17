"""Accepting a message the application composed itself (SMTP submission, SPEC.md section 7).

The REST path (:mod:`mailgate.services.send`) composes a message from JSON fields; here the
application hands over finished RFC 5322 octets and an SMTP envelope. Everything after that
is shared: the same routing (:func:`~mailgate.services.send.resolve_route`), test lists,
signing, queue commit and delivery log. The steps read as a list:
``parse_message → check_mime → read_headers → check_envelope → check_limits →
resolve_route → redirect → rewrite_head → sign_message → commit``; ``redirect`` applies
the app's test list for the message's stage.

Who receives the message is the envelope: every RCPT TO, and nobody else. A recipient found
in the To field counts as To, one in Cc as Cc, any other is a Bcc recipient. When the app's
test list is active the envelope is replaced by the list, the To field names the list, Cc
is dropped and ``X-Mailgate-Original-Recipients`` names the To and Cc recipients that were
asked for (never Bcc), exactly as on the REST path.

Mailgate changes the message only where it must, keeping every other octet: it drops
``Bcc`` and the ``X-Mailgate-App``/``X-Mailgate-Stage`` controls, prepends a ``Received``
trace field (RFC 5321 section 4.4), adds ``Date`` and ``Message-ID`` when missing (RFC 6409
section 8) and the account's Reply-To when the message has none, rewrites To and Cc for a
test list, then signs (S/MIME, then DKIM) like the REST path. The sender account is the
one whose address is in ``From``; mail goes out with that address as its envelope sender,
so bounces reach the account.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from mailgate.compose import ORIGINAL_RECIPIENTS_HEADER, Address, new_message_id, parse_address
from mailgate.compose.header_writer import address_list, structured
from mailgate.compose.message import format_date
from mailgate.domain.ids import new_id
from mailgate.domain.routing import Recipients, Routing
from mailgate.errors import FieldError, TooLarge, ValidationFailed
from mailgate.services import suppressions
from mailgate.services.apps import redirect
from mailgate.services.context import Caller, Context, InstancePolicy
from mailgate.services.raw_message import parse_message
from mailgate.services.raw_mime import check_mime
from mailgate.services.routing_snapshot import RoutingSnapshot, load_snapshot
from mailgate.services.send import Accepted, SendOutcome, commit, resolve_route
from mailgate.services.signing import sign_message
from mailgate.services.submit_headers import (
    APP_HEADER,
    STAGE_HEADER,
    SubmittedHeaders,
    read_headers,
)
from mailgate.storage import queue
from mailgate.storage.base import utcnow

#: Messages at least this large are checked and signed in a worker thread, so that the
#: event loop keeps serving other connections meanwhile.
THREAD_MIN_BYTES: Final = 256 * 1024

#: The field naming a refused sender account (From names an address that is not an
#: account, or the account cannot sign), as opposed to a malformed ``From`` field.
SENDER_FIELD: Final = "sender"
# The REST field names that resolve_route and sign_message report, as a submitter knows them.
_FIELD_NAMES: Final = {"app": APP_HEADER, "stage": STAGE_HEADER, "from": SENDER_FIELD}


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope: the reverse path and the recipients (RFC 5321 section 2.3.1)."""

    mail_from: str
    rcpt_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    """Where a message came from, for its ``Received`` field (RFC 5321 section 4.4).

    Values are trusted: the edge passes a checked EHLO name and the peer's IP address.
    """

    helo: str
    peer: str | None
    by: str
    #: ``ESMTPA`` or ``ESMTPSA`` (RFC 3848).
    protocol: str

    def received(self, *, id: str, now: datetime) -> str:
        """The field value: ``from helo ([ip]) by host with ESMTPSA id ID; date``."""
        source = self.helo
        if self.peer:
            literal = f"IPv6:{self.peer}" if ":" in self.peer else self.peer
            source = f"{self.helo} ([{literal}])"
        return f"from {source} by {self.by} with {self.protocol} id {id}; {format_date(now)}"


def _renamed(exc: ValidationFailed) -> ValidationFailed:
    """``exc`` with REST field names (``from``, ``app``) renamed for a submitter."""
    errors = [FieldError(_FIELD_NAMES.get(e.field, e.field), e.message) for e in exc.errors]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or exc.detail
    return type(exc)(detail, errors=errors)


def check_envelope(envelope: Envelope, policy: InstancePolicy) -> tuple[Address, ...]:
    """The recipients, strictly parsed; refuses a bad address or too many recipients."""
    parse_address(envelope.mail_from, field="MAIL FROM")
    if not envelope.rcpt_to:
        raise ValidationFailed.field("RCPT TO", "at least one recipient")
    if len(envelope.rcpt_to) > policy.max_recipients:
        raise ValidationFailed.field(
            "RCPT TO", f"{len(envelope.rcpt_to)} recipients; at most {policy.max_recipients}"
        )
    return tuple(
        parse_address(rcpt, field=f"RCPT TO[{index}]")
        for index, rcpt in enumerate(envelope.rcpt_to)
    )


def _asked(recipients: tuple[Address, ...], headers: SubmittedHeaders) -> Recipients:
    """The envelope recipients as To, Cc (named in those fields) and Bcc (the others)."""
    in_to = {a.wire_email.lower() for a in headers.to}
    in_cc = {a.wire_email.lower() for a in headers.cc}
    to: list[str] = []
    cc: list[str] = []
    bcc: list[str] = []
    for address in recipients:
        key = address.wire_email.lower()
        (to if key in in_to else cc if key in in_cc else bcc).append(address.wire_email)
    return Recipients(to=tuple(to), cc=tuple(cc), bcc=tuple(bcc))


def rewrite_head(
    headers: SubmittedHeaders,
    routing: Routing,
    *,
    message_id: str,
    reply_to: Address | None,
    received: str | None,
    now: datetime,
) -> bytes:
    """The header section that goes on the wire (see the module docstring)."""
    head: list[str | bytes] = []
    if received is not None:
        head.append(structured("Received", received))
    if not headers.has_date:
        head.append(f"Date: {format_date(now)}\r\n")
    listed = tuple(Address(email=a) for a in routing.recipients)
    wrote_to = False
    for field in headers.kept:
        if routing.redirected and field.key == "to":
            head.append(address_list("To", listed))
            wrote_to = True
        elif not (routing.redirected and field.key == "cc"):
            head.append(field.raw)
    if routing.redirected:
        if not wrote_to:
            head.append(address_list("To", listed))
        original = headers.to + headers.cc
        if original:
            head.append(address_list(ORIGINAL_RECIPIENTS_HEADER, original))
    if headers.message_id is None:
        head.append(f"Message-ID: {message_id}\r\n")
    if reply_to is not None:
        head.append(address_list("Reply-To", (reply_to,)))
    return b"".join(part if isinstance(part, bytes) else part.encode() for part in head)


def prepare_raw(
    policy: InstancePolicy,
    caller: Caller,
    snap: RoutingSnapshot,
    envelope: Envelope,
    data: bytes,
    *,
    trace: Trace | None,
    now: datetime,
) -> queue.NewMessage:
    """Check, route, rewrite and sign one submitted message; raises a RequestError naming
    the field (a header name, ``line N``, ``part N``, ``MAIL FROM``, ``RCPT TO``).
    Does no IO: everything it needs is in ``snap``."""
    if len(data) > policy.max_message_bytes:
        raise TooLarge.field(
            "message", f"{len(data)} bytes; at most {policy.max_message_bytes} bytes"
        )
    message = parse_message(data)
    check_mime(data)
    headers = read_headers(message)
    recipients = check_envelope(envelope, policy)
    try:
        route = resolve_route(
            caller, snap, app=headers.app, stage=headers.stage, sender=headers.from_.email
        )
    except ValidationFailed as exc:
        raise _renamed(exc) from None
    account = route.account
    app = snap.apps_by_id.get(route.app_id) if route.app_id else None
    asked = _asked(recipients, headers)
    try:
        routing = redirect(asked, app, route.stage, snap.user_emails)
    except ValidationFailed as exc:
        raise _renamed(exc) from None
    domain = account.address.rsplit("@", 1)[1]
    message_id = headers.message_id or new_message_id(domain)
    reply_to = None
    if not headers.has_reply_to and account.reply_to:
        reply_to = parse_address(account.reply_to, field="Reply-To")
    mailgate_id = new_id()
    head = rewrite_head(
        headers,
        routing,
        message_id=message_id,
        reply_to=reply_to,
        received=trace.received(id=mailgate_id, now=now) if trace else None,
        now=now,
    )
    try:
        raw = sign_message(
            head + b"\r\n" + message.body,
            account=account,
            engine=snap.server_engines.get(route.server_id),
            smime=snap.smime.get(account.id),
            dkim=snap.dkim_signer_for(domain),
            now=now,
        )
    except ValidationFailed as exc:
        raise _renamed(exc) from None
    sender = headers.from_
    wire = (sender, *(Address(email=r) for r in routing.recipients))
    original = None
    if routing.original is not None:
        original = {
            "to": list(routing.original.to),
            "cc": list(routing.original.cc),
            "bcc": list(routing.original.bcc),
        }
    return queue.NewMessage(
        id=mailgate_id,
        tenant_id=caller.tenant_id,
        app_id=route.app_id,
        stage=route.stage,
        account_id=account.id,
        server_id=route.server_id,
        message_id=message_id,
        mail_from=sender.wire_email,
        from_header=f"{sender.name} <{sender.email}>" if sender.name else sender.email,
        subject=headers.subject[:1000],
        recipients=tuple(r.lower() for r in routing.recipients),
        redirected=routing.redirected,
        original_recipients=original,
        smtputf8=message.eight_bit_headers or any(a.needs_smtputf8 for a in wire),
        raw=raw,
        meta=None,
        send_at=None,
    )


async def submit_raw(
    ctx: Context,
    caller: Caller,
    envelope: Envelope,
    data: bytes,
    *,
    trace: Trace | None = None,
) -> Accepted:
    """Accept one submitted message; once this returns it is durably committed."""
    now = utcnow()
    snap = await load_snapshot(ctx, caller.tenant_id)
    args = (ctx.policy, caller, snap, envelope, data)
    if len(data) >= THREAD_MIN_BYTES:
        message = await asyncio.to_thread(prepare_raw, *args, trace=trace, now=now)
    else:
        message = prepare_raw(*args, trace=trace, now=now)
    # Suppressed recipients (test addresses included) are left out; none left: refused.
    screened = await suppressions.screen(ctx, caller.tenant_id, [message], now=now, field="RCPT TO")
    if message.id in screened.refused:
        raise screened.refused[message.id]
    message = screened.kept[0]
    accepted = Accepted(id=message.id, message_id=message.message_id)
    outcome = SendOutcome(
        202, {"id": accepted.id, "status": "queued", "message_id": accepted.message_id}
    )
    await commit(ctx, caller, [message], outcome, key=None, digest="", now=now, screened=screened)
    return accepted
