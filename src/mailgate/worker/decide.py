"""What one delivery attempt means for a message: its next state (pure, no IO).

The table (SPEC.md section 4):

=================  ===========================================================
attempt outcome    message after the attempt
=================  ===========================================================
SENT               recipients sent; message ``sent``
FAILED             recipients failed; message ``failed`` unless some recipient
                   was delivered (then ``sent``, with the failures recorded)
DEFERRED           only the deferred recipients are retried after a backoff
                   (or the server's stated delay); too old → ``failed``, expired
UNKNOWN            as DEFERRED, and the next attempt is flagged possible_duplicate
AUTH_FAILED        message held (no retry is burned) until the server is fixed
=================  ===========================================================
"""

from __future__ import annotations

from datetime import datetime

from mailgate.domain.delivery import DeliveryResult, MessageStatus, OutcomeKind, RecipientStatus
from mailgate.domain.retry import RetryPolicy
from mailgate.storage.queue import AttemptRecord, Completion, Job, RecipientUpdate

_RECIPIENT_STATUS = {
    OutcomeKind.SENT: RecipientStatus.SENT,
    OutcomeKind.FAILED: RecipientStatus.FAILED,
    OutcomeKind.DEFERRED: RecipientStatus.DEFERRED,
    OutcomeKind.UNKNOWN: RecipientStatus.DEFERRED,
    OutcomeKind.AUTH_FAILED: RecipientStatus.DEFERRED,
}


def attempt_record(
    job: Job,
    result: DeliveryResult,
    *,
    server_id: str | None,
    engine: str,
    started_at: datetime,
    finished_at: datetime,
) -> AttemptRecord:
    return AttemptRecord(
        started_at=started_at,
        finished_at=finished_at,
        server_id=server_id,
        engine=engine,
        outcome=result.kind.value,
        code=result.code,
        reply=result.reply[:2000],
        tls_version=result.tls_version,
        duration_ms=result.duration_ms,
        possible_duplicate=job.possible_duplicate,
        transcript=result.transcript[:20000],
    )


def _recipient_updates(job: Job, result: DeliveryResult) -> list[RecipientUpdate]:
    by_email = {r.email.lower(): r for r in result.recipients}
    updates: list[RecipientUpdate] = []
    for position, email in job.recipients:
        r = by_email.get(email.lower())
        kind = r.kind if r is not None else result.kind
        code = r.code if r is not None else result.code
        reply = r.reply if r is not None else result.reply
        updates.append(RecipientUpdate(position, _RECIPIENT_STATUS[kind], code, reply))
    return updates


def decide(
    job: Job,
    result: DeliveryResult,
    *,
    now: datetime,
    policy: RetryPolicy,
    attempt: AttemptRecord | None,
    extra_attempts: tuple[AttemptRecord, ...] = (),
) -> Completion:
    """The completion to record for ``job`` after ``result``."""
    updates = _recipient_updates(job, result)
    any_sent = job.delivered_before or any(u.status is RecipientStatus.SENT for u in updates)
    remaining = [u for u in updates if u.status is RecipientStatus.DEFERRED]

    def completion(
        status: MessageStatus,
        *,
        recipients: list[RecipientUpdate],
        last_error: str | None,
        next_attempt_at: datetime | None = None,
        possible_duplicate: bool = False,
        held: bool = False,
    ) -> Completion:
        return Completion(
            job=job,
            status=status,
            next_attempt_at=next_attempt_at,
            possible_duplicate=possible_duplicate,
            held=held,
            last_error=last_error,
            attempt=attempt,
            recipients=tuple(recipients),
            remote_id=result.remote_id,
            extra_attempts=extra_attempts,
        )

    if result.kind is OutcomeKind.AUTH_FAILED:
        return completion(
            MessageStatus.DEFERRED,
            recipients=updates,
            last_error=f"held: the server refused its credentials ({result.reply})",
            possible_duplicate=job.possible_duplicate,
            held=True,
        )
    if not remaining:
        status = MessageStatus.SENT if any_sent else MessageStatus.FAILED
        failed = [u for u in updates if u.status is RecipientStatus.FAILED]
        return completion(
            status, recipients=updates, last_error=failed[0].reply if failed else None
        )
    when = policy.next_attempt(
        created_at=job.created_at, now=now, attempt=job.attempt, retry_after=result.retry_after
    )
    if when is None:
        hours = policy.give_up.total_seconds() / 3600
        reason = f"expired: not delivered within {hours:g} h (last reply: {result.reply})"
        expired = [
            RecipientUpdate(u.position, RecipientStatus.FAILED, u.code, reason)
            if u.status is RecipientStatus.DEFERRED
            else u
            for u in updates
        ]
        return completion(
            MessageStatus.SENT if any_sent else MessageStatus.FAILED,
            recipients=expired,
            last_error=reason,
        )
    # A flag stays until an attempt has a definite outcome: an earlier attempt whose outcome
    # was unknown may have delivered, so the next one may still duplicate it.
    return completion(
        MessageStatus.DEFERRED,
        recipients=updates,
        last_error=result.reply,
        next_attempt_at=when,
        possible_duplicate=result.kind is OutcomeKind.UNKNOWN or job.possible_duplicate,
    )


def quarantine(job: Job, *, now: datetime) -> Completion:
    """The completion for a claimed message that cannot be loaded (``job.fault`` is set).

    It fails at once with the reason, on the message, on each recipient still due and as an
    attempt in its delivery log (engine ``queue``), so it is never claimed again and cannot
    stop the worker from delivering the rest of the queue.
    """
    reason = job.fault or "quarantined: the message cannot be loaded"
    record = AttemptRecord(
        started_at=now,
        finished_at=now,
        server_id=None,
        engine="queue",
        outcome=OutcomeKind.FAILED.value,
        code=None,
        reply=reason[:2000],
        tls_version=None,
        duration_ms=0.0,
        possible_duplicate=job.possible_duplicate,
        transcript="",
    )
    return Completion(
        job=job,
        status=MessageStatus.SENT if job.delivered_before else MessageStatus.FAILED,
        next_attempt_at=None,
        possible_duplicate=job.possible_duplicate,
        held=False,
        last_error=reason,
        attempt=record,
        recipients=tuple(
            RecipientUpdate(p, RecipientStatus.FAILED, None, reason) for p, _ in job.recipients
        ),
    )
