"""One mail transaction on an open session: MAIL, RCPT per recipient, DATA, the content.

RFC 5321 section 3.3. Each recipient gets its own result from its RCPT reply; DATA is sent
only when at least one recipient was accepted, and the reply to the final dot decides for
the accepted ones. When the server offers PIPELINING (RFC 2920) MAIL, every RCPT and DATA
go out in one write and their replies are read back in order, which saves two round trips
per message.

When the server offers CHUNKING (RFC 3030), the content goes out as one ``BDAT <n> LAST``
chunk instead: CRLF lines, neither dot-stuffed nor ended by a dot, its octet count
announced in the command. BDAT needs no go-ahead (no 354), so with PIPELINING as well the
whole transaction (MAIL, every RCPT, BDAT and the chunk) is one write, and its replies are
read back in order; the reply to BDAT LAST is the final reply. A server that refused MAIL
or every RCPT reads and discards the chunk (RFC 3030 section 2), so those refusals decide
the outcomes as they do with DATA.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailgate.domain.delivery import Envelope, OutcomeKind, RecipientResult
from mailgate.domain.outcomes import Failure, Phase, classify_reply
from mailgate.engines.smtp.diagnose import SmtpError
from mailgate.engines.smtp.session import SmtpSession
from mailgate.engines.smtp.transcript import Transcript
from mailgate.engines.smtp.wire import (
    ConnectionLost,
    Reply,
    crlf_lines,
    encode_bdat_last,
    encode_command,
    encode_message,
)


@dataclass(slots=True)
class Transaction:
    """The per-recipient state of one transaction, filled in as replies arrive."""

    envelope: Envelope
    results: dict[int, RecipientResult] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)
    mail_reply: Reply | None = None
    final_reply: Reply | None = None
    error: SmtpError | None = None
    reusable: bool = False
    retry_after: float | None = None

    def decide(self, index: int, kind: OutcomeKind, code: int | None, text: str) -> None:
        email = self.envelope.rcpt_to[index]
        self.results[index] = RecipientResult(email, kind, code, text)

    def decide_reply(self, index: int, reply: Reply, *, phase: Phase) -> None:
        outcome = classify_reply(reply.code, reply.text, phase=phase)
        self.decide(index, outcome.kind, reply.code, reply.text)
        if outcome.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, outcome.retry_after)

    def decide_rest(self, *, reply: Reply | None = None, phase: Phase = Phase.MAIL) -> None:
        """Every recipient not decided yet shares ``reply`` (or the recorded error)."""
        for index in range(len(self.envelope.rcpt_to)):
            if index in self.results:
                continue
            if reply is not None:
                self.decide_reply(index, reply, phase=phase)
            elif self.error is not None:
                error = self.error
                self.decide(index, error.outcome.kind, error.code, error.message)
                if error.outcome.retry_after is not None:
                    self.retry_after = max(self.retry_after or 0.0, error.outcome.retry_after)

    @property
    def stale_connection(self) -> bool:
        """The server had dropped the session before this transaction began (a 421 or a
        closed connection instead of the reply to MAIL): nothing was accepted."""
        if self.mail_reply is not None:
            return self.mail_reply.code == 421
        error = self.error
        return (
            error is not None
            and error.phase is Phase.MAIL
            and error.failure in (Failure.CONNECTION_LOST,)
        )

    @property
    def recipients(self) -> tuple[RecipientResult, ...]:
        return tuple(self.results[i] for i in range(len(self.envelope.rcpt_to)))


@dataclass(slots=True)
class Plan:
    """What a transaction will write on one session: checked and encoded once."""

    #: The content as written: dot-stuffed with its final dot after DATA, or the one BDAT
    #: chunk (CRLF lines only) when ``chunking``.
    payload: bytes
    mail: bytes
    rcpts: list[tuple[int, bytes]]
    #: Recipients whose address cannot be sent (decided FAILED without a command).
    invalid: list[int]
    pipelined: bool
    chunking: bool = False

    @property
    def envelope(self) -> bytes:
        """MAIL, every RCPT and DATA as one pipelined group (RFC 2920 section 3.1)."""
        return self.mail + b"".join(line for _, line in self.rcpts) + b"DATA\r\n"

    @property
    def bdat(self) -> bytes:
        """The command before the chunk: ``BDAT <n> LAST`` (RFC 3030 section 2)."""
        return encode_bdat_last(len(self.payload))

    @property
    def chunked_group(self) -> bytes:
        """MAIL, every RCPT, BDAT and the chunk as one pipelined group: BDAT may be
        pipelined (RFC 2920 section 3.1, RFC 3030 section 4.2) and needs no go-ahead."""
        return self.mail + b"".join(line for _, line in self.rcpts) + self.bdat + self.payload


#: Called with the session just before the content is written: the envelope of the next
#: transaction to write behind it, or ``b""`` (see :meth:`SessionPool.follow`).
Follow = Callable[[SmtpSession], bytes]
#: Awaited just before the content is written, once the server is ready for it (see
#: :meth:`SessionPool.hold`).
Hold = Callable[[], Awaitable[None]]


async def transact(
    session: SmtpSession,
    envelope: Envelope,
    data: bytes,
    *,
    transcript: Transcript,
    plan: Plan | None = None,
    follow: Follow | None = None,
    hold: Hold | None = None,
) -> Transaction:
    """Run one transaction; every outcome, failures included, is recorded in the result.

    ``reusable`` is set only when the session ended the transaction in a clean state
    (after the reply to the final dot, or after a successful RSET). When the session's
    ``envelope_written`` is set, ``plan`` is the plan whose envelope is already on the wire.
    """
    tx = Transaction(envelope)
    written = session.envelope_written
    session.envelope_written = False
    try:
        if written and not session.wire.is_open:
            # The transaction ahead ended the connection (an error, a 421) after this
            # envelope was written behind it: nothing of this message was accepted.
            raise SmtpError.from_failure(
                Failure.CONNECTION_LOST,
                "the connection closed before this message's turn",
                phase=Phase.MAIL,
            )
        if plan is None or not written:
            plan = make_plan(session, envelope, data)
        await _run(session, tx, plan, transcript, written=written, follow=follow, hold=hold)
    except SmtpError as exc:
        tx.error = exc
        tx.reusable = exc.sent_nothing and session.wire.is_open and not written
        tx.decide_rest()
    session.uses += 1
    if not tx.reusable:
        session.abort()
    return tx


def make_plan(session: SmtpSession, envelope: Envelope, data: bytes) -> Plan:
    """Check and encode a transaction for ``session``; raises :class:`SmtpError` (local)."""
    host = session.settings.host
    utf8 = envelope.smtputf8 or not _is_ascii(envelope)
    if utf8 and "SMTPUTF8" not in session.extensions:
        raise SmtpError.local(
            f"the message needs SMTPUTF8 (non-ASCII addresses) but {host} does not offer it",
            phase=Phase.MAIL,
            kind=OutcomeKind.FAILED,
        )
    chunking = session.chunking
    # RFC 1870 section 6 and RFC 3030 section 2: with BDAT the size is the chunk's octets.
    payload = crlf_lines(data) if chunking else encode_message(data)
    limit = session.size_limit
    if limit is not None and len(payload) > limit:
        raise SmtpError.local(
            f"the message is {len(payload)} bytes, more than the {limit} bytes {host} "
            "accepts (SIZE)",
            phase=Phase.MAIL,
            kind=OutcomeKind.FAILED,
        )

    try:
        mail = encode_command(_mail_command(session, envelope, payload, utf8=utf8), utf8=utf8)
    except (ValueError, UnicodeEncodeError) as exc:
        raise SmtpError.local(
            f"invalid sender address: {exc}", phase=Phase.MAIL, kind=OutcomeKind.FAILED
        ) from exc
    rcpts: list[tuple[int, bytes]] = []
    invalid: list[int] = []
    for index, address in enumerate(envelope.rcpt_to):
        try:
            rcpts.append((index, encode_command(f"RCPT TO:<{address}>", utf8=utf8)))
        except (ValueError, UnicodeEncodeError):
            invalid.append(index)
    if not rcpts:
        raise SmtpError.local(
            "no valid recipient address", phase=Phase.RCPT, kind=OutcomeKind.FAILED
        )
    return Plan(payload, mail, rcpts, invalid, session.pipelining, chunking)


def plan_ahead(session: SmtpSession, envelope: Envelope, data: bytes) -> Plan | None:
    """A plan whose envelope may be written behind another message on ``session`` (the
    server pipelines, the content goes by DATA and the transaction needs no local
    refusal), else None. A message sent by BDAT with PIPELINING is already one write of
    its own, so nothing is written ahead on a session that uses CHUNKING."""
    try:
        plan = make_plan(session, envelope, data)
    except SmtpError:
        return None
    return plan if plan.pipelined and not plan.chunking and not plan.invalid else None


async def _run(
    session: SmtpSession,
    tx: Transaction,
    plan: Plan,
    transcript: Transcript,
    *,
    written: bool,
    follow: Follow | None,
    hold: Hold | None = None,
) -> None:
    for index in plan.invalid:
        tx.decide(index, OutcomeKind.FAILED, None, "invalid recipient address")
    if plan.chunking and plan.pipelined:
        await _pipelined_chunk(session, tx, plan, transcript, hold=hold)
        return
    if plan.pipelined or written:
        go = await _pipelined_envelope(session, tx, plan, transcript, written=written)
    else:
        go = await _sequential_envelope(session, tx, plan, transcript)
    if go:
        if hold is not None:
            await hold()
        following = b""
        if follow is not None and plan.pipelined and not plan.chunking:
            following = follow(session)
        await _send_content(session, tx, plan, transcript, following=following)


async def _pipelined_envelope(
    session: SmtpSession, tx: Transaction, plan: Plan, transcript: Transcript, *, written: bool
) -> bool:
    """RFC 2920 section 3.1: MAIL, RCPTs and DATA (last in the group) in one write (or
    already written behind the previous message)."""
    if not written:
        _write(session, plan.envelope, Phase.MAIL)
    mail, rcpts = plan.mail, plan.rcpts
    timeout = session.settings.command_timeout
    transcript.client(_shown(mail))
    mail_reply = tx.mail_reply = await session.read(Phase.MAIL, transcript, timeout=timeout)
    for index, line in rcpts:
        transcript.client(_shown(line))
        reply = await session.read(Phase.RCPT, transcript, timeout=timeout)
        if mail_reply.code // 100 == 2 and reply.code // 100 == 2:
            tx.accepted.append(index)
        elif mail_reply.code // 100 == 2:
            tx.decide_reply(index, reply, phase=Phase.RCPT)
    transcript.client("DATA")
    data_reply = await session.read(Phase.DATA, transcript, timeout=timeout)
    if mail_reply.code // 100 != 2:
        tx.decide_rest(reply=mail_reply, phase=Phase.MAIL)
    if data_reply.code == 354 and tx.accepted:
        return True
    if data_reply.code == 354:
        # Every recipient was refused but DATA was accepted anyway: RFC 2920 section 3.1
        # has the client send the terminating dot at once, then reset.
        _write(session, b".\r\n", Phase.DATA)
        transcript.client(".")
        await session.read(Phase.DATA, transcript, timeout=timeout)
    elif tx.accepted:
        for index in tx.accepted:
            tx.decide_reply(index, data_reply, phase=Phase.DATA)
    await _reset(session, tx, transcript, closing=data_reply.code == 421)
    return False


async def _pipelined_chunk(
    session: SmtpSession, tx: Transaction, plan: Plan, transcript: Transcript, *, hold: Hold | None
) -> None:
    """MAIL, every RCPT, ``BDAT <n> LAST`` and the chunk in one write, then their replies.

    The content leaves with the envelope, so :meth:`SessionPool.hold` is awaited first.
    From the write on, the server may have the whole message: every reply is awaited with
    the final timeout (a server may hold its replies back until it has processed the
    chunk, RFC 2920 section 3.2) and a silence or a lost connection is UNKNOWN, as after
    the final dot. A refused MAIL, a refused RCPT and a 421 decide as they do with DATA:
    the server discards the chunk of a transaction it refused (RFC 3030 section 2).
    """
    if hold is not None:
        await hold()
    _write(session, plan.chunked_group, Phase.MAIL)
    await _flushed(session, transcript)
    timeout = session.settings.final_timeout
    transcript.client(_shown(plan.mail))
    mail_reply = tx.mail_reply = await session.read(Phase.FINAL, transcript, timeout=timeout)
    mail_ok = mail_reply.code // 100 == 2
    if not mail_ok:
        tx.decide_rest(reply=mail_reply, phase=Phase.MAIL)
    if mail_reply.code == 421:
        return  # the server closes the connection (RFC 5321 section 3.8): nothing follows
    for index, line in plan.rcpts:
        transcript.client(_shown(line))
        reply = await session.read(Phase.FINAL, transcript, timeout=timeout)
        if reply.code == 421:
            tx.decide_rest(reply=reply, phase=Phase.RCPT)
            return
        if mail_ok and reply.code // 100 == 2:
            tx.accepted.append(index)
        elif mail_ok:
            tx.decide_reply(index, reply, phase=Phase.RCPT)
    transcript.client(_shown(plan.bdat))
    transcript.client_data(len(plan.payload))
    reply = await session.read(Phase.FINAL, transcript, timeout=timeout)
    if tx.accepted:
        await _decide_final(session, tx, plan, reply, transcript)
    else:
        # No transaction to deliver: the reply to BDAT (a 503 or 554) changes no outcome.
        await _reset(session, tx, transcript, closing=reply.code == 421)


async def _sequential_envelope(
    session: SmtpSession, tx: Transaction, plan: Plan, transcript: Transcript
) -> bool:
    """One command, one reply: MAIL, then RCPT per recipient, then, if any was accepted,
    DATA (BDAT needs no go-ahead: its command goes out with the chunk)."""
    reply = tx.mail_reply = await _command(session, plan.mail, Phase.MAIL, transcript)
    if reply.code // 100 != 2:
        tx.decide_rest(reply=reply, phase=Phase.MAIL)
        await _reset(session, tx, transcript, closing=reply.code == 421)
        return False
    for index, line in plan.rcpts:
        reply = await _command(session, line, Phase.RCPT, transcript)
        if reply.code // 100 == 2:
            tx.accepted.append(index)
        else:
            tx.decide_reply(index, reply, phase=Phase.RCPT)
            if reply.code == 421:
                tx.decide_rest(reply=reply, phase=Phase.RCPT)
                session.abort()
                return False
    if not tx.accepted:
        await _reset(session, tx, transcript)
        return False
    if plan.chunking:
        return True
    reply = await _command(session, b"DATA\r\n", Phase.DATA, transcript)
    if reply.code != 354:
        for index in tx.accepted:
            tx.decide_reply(index, reply, phase=Phase.DATA)
        await _reset(session, tx, transcript, closing=reply.code == 421)
        return False
    return True


async def _send_content(
    session: SmtpSession,
    tx: Transaction,
    plan: Plan,
    transcript: Transcript,
    *,
    following: bytes = b"",
) -> None:
    """Write the content and the final dot (and, in the same write, the envelope of the
    next transaction when one follows), or ``BDAT <n> LAST`` and the chunk; then wait for
    the long final reply."""
    payload = plan.payload
    if plan.chunking:
        _write(session, plan.bdat + payload, Phase.MESSAGE)
        transcript.client(_shown(plan.bdat))
    else:
        _write(session, payload + following if following else payload, Phase.MESSAGE)
    transcript.client_data(len(payload))
    await _flushed(session, transcript)
    reply = await session.read(Phase.FINAL, transcript, timeout=session.settings.final_timeout)
    await _decide_final(session, tx, plan, reply, transcript)


async def _flushed(session: SmtpSession, transcript: Transcript) -> None:
    """Wait until the content has left the process; a connection lost before is DEFERRED
    (the server cannot have the whole message)."""
    try:
        await session.wire.wait_flushed()
    except ConnectionLost as exc:
        message = f"{session.settings.host} closed the connection while the message was sent"
        transcript.note(message)
        raise SmtpError.from_failure(Failure.CONNECTION_LOST, message, phase=Phase.MESSAGE) from exc
    # From here on the server may have the whole message: a silence or a broken
    # connection is UNKNOWN, not DEFERRED (RFC 5321 section 4.1.1.4 and 6.1).


async def _decide_final(
    session: SmtpSession, tx: Transaction, plan: Plan, reply: Reply, transcript: Transcript
) -> None:
    """The reply to the final dot (or to BDAT LAST) decides for every accepted recipient."""
    if reply.code // 100 not in (2, 4, 5):
        what = "BDAT LAST" if plan.chunking else "the final dot"
        raise SmtpError.from_failure(
            Failure.PROTOCOL, f"unexpected reply to {what}: {reply}", phase=Phase.FINAL
        )
    tx.final_reply = reply
    for index in tx.accepted:
        tx.decide_reply(index, reply, phase=Phase.FINAL)
    if plan.chunking and reply.code // 100 != 2:
        # RFC 3030 section 2: a refused chunk fails the transaction; the session is reused
        # only once RSET (RFC 5321 section 4.1.1.5) has brought it back to a known state.
        await _reset(session, tx, transcript, closing=reply.code == 421)
        return
    tx.reusable = reply.code != 421 and session.wire.is_open


async def _reset(
    session: SmtpSession, tx: Transaction, transcript: Transcript, *, closing: bool = False
) -> None:
    """RSET after an aborted transaction (RFC 5321 section 4.1.1.5) to reuse the session."""
    if closing or not session.wire.is_open:
        return
    reply = await _command(session, b"RSET\r\n", Phase.RSET, transcript)
    tx.reusable = reply.code == 250


async def _command(
    session: SmtpSession, line: bytes, phase: Phase, transcript: Transcript
) -> Reply:
    _write(session, line, phase)
    transcript.client(_shown(line))
    return await session.read(phase, transcript, timeout=session.settings.command_timeout)


def _write(session: SmtpSession, data: bytes, phase: Phase) -> None:
    try:
        session.wire.write(data)
    except ConnectionLost as exc:
        raise SmtpError.from_failure(Failure.CONNECTION_LOST, str(exc), phase=phase) from exc


def _mail_command(session: SmtpSession, envelope: Envelope, payload: bytes, *, utf8: bool) -> str:
    extensions = session.extensions
    params = []
    if "SIZE" in extensions:
        params.append(f"SIZE={len(payload)}")  # RFC 1870 section 6
    if "8BITMIME" in extensions and (utf8 or not payload.isascii()):
        params.append("BODY=8BITMIME")  # RFC 6152 section 3
    if utf8:
        params.append("SMTPUTF8")  # RFC 6531 section 3.4
    return " ".join([f"MAIL FROM:<{envelope.mail_from}>", *params])


def _is_ascii(envelope: Envelope) -> bool:
    return envelope.mail_from.isascii() and all(r.isascii() for r in envelope.rcpt_to)


def _shown(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "replace")
