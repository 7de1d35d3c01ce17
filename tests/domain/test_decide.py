"""The decision table of one attempt (``mailgate.worker.decide``), case by case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailgate.domain.delivery import DeliveryResult, MessageStatus, OutcomeKind, RecipientResult
from mailgate.domain.delivery import RecipientStatus as R
from mailgate.domain.retry import RetryPolicy
from mailgate.storage.queue import Job
from mailgate.worker.decide import decide, quarantine

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = RetryPolicy(jitter=0.0, give_up=timedelta(hours=72))
RCPTS = ((0, "a@example.com"), (1, "b@example.com"))


def _job(**kw: object) -> Job:
    values: dict[str, object] = {
        "id": "m1", "tenant_id": "t", "server_id": "s", "account_id": None, "stage": None,
        "mail_from": "f@example.com", "smtputf8": False, "raw": b"x", "attempt": 1,
        "possible_duplicate": False, "created_at": NOW - timedelta(minutes=1),
        "recipients": RCPTS,
    }  # fmt: skip
    values |= kw
    return Job(**values)  # type: ignore[arg-type]


def _result(kind: OutcomeKind, *per: OutcomeKind, **kw: object) -> DeliveryResult:
    recipients = tuple(
        RecipientResult(email, k, None, k.value) for (_, email), k in zip(RCPTS, per, strict=True)
    )
    return DeliveryResult(kind=kind, recipients=recipients, reply=kind.value, **kw)  # type: ignore[arg-type]


S, D, F, U, A = (
    OutcomeKind.SENT,
    OutcomeKind.DEFERRED,
    OutcomeKind.FAILED,
    OutcomeKind.UNKNOWN,
    OutcomeKind.AUTH_FAILED,
)


@pytest.mark.parametrize(
    ("result", "status", "recipients", "retry", "duplicate", "held"),
    [
        (_result(S, S, S), MessageStatus.SENT, (R.SENT, R.SENT), False, False, False),
        (_result(F, F, F), MessageStatus.FAILED, (R.FAILED, R.FAILED), False, False, False),
        (_result(S, S, F), MessageStatus.SENT, (R.SENT, R.FAILED), False, False, False),
        (_result(D, S, D), MessageStatus.DEFERRED, (R.SENT, R.DEFERRED), True, False, False),
        (_result(D, D, D), MessageStatus.DEFERRED, (R.DEFERRED, R.DEFERRED), True, False, False),
        (_result(U, U, U), MessageStatus.DEFERRED, (R.DEFERRED, R.DEFERRED), True, True, False),
        (_result(A, A, A), MessageStatus.DEFERRED, (R.DEFERRED, R.DEFERRED), False, False, True),
    ],
    ids=["sent", "failed", "sent-and-failed", "partly-deferred", "deferred", "unknown", "auth"],
)
def test_the_table(
    result: DeliveryResult,
    status: MessageStatus,
    recipients: tuple[R, ...],
    retry: bool,
    duplicate: bool,
    held: bool,
) -> None:
    c = decide(_job(), result, now=NOW, policy=POLICY, attempt=None)
    assert c.status is status
    assert tuple(u.status for u in c.recipients) == recipients
    assert (c.next_attempt_at is not None) is retry
    assert (c.possible_duplicate, c.held) == (duplicate, held)


def test_a_deferral_waits_the_backoff_or_the_stated_delay() -> None:
    c = decide(_job(attempt=2), _result(D, D, D), now=NOW, policy=POLICY, attempt=None)
    assert c.next_attempt_at == NOW + timedelta(seconds=120)
    c = decide(
        _job(attempt=2), _result(D, D, D, retry_after=30.0), now=NOW, policy=POLICY, attempt=None
    )
    assert c.next_attempt_at == NOW + timedelta(seconds=30)


def test_a_flag_stays_until_a_definite_outcome() -> None:
    flagged = _job(possible_duplicate=True)
    deferred = decide(flagged, _result(D, D, D), now=NOW, policy=POLICY, attempt=None)
    assert deferred.possible_duplicate
    sent = decide(flagged, _result(S, S, S), now=NOW, policy=POLICY, attempt=None)
    assert not sent.possible_duplicate


def test_too_old_expires_and_keeps_what_was_delivered() -> None:
    old = _job(created_at=NOW - timedelta(hours=72))
    c = decide(old, _result(D, S, D), now=NOW, policy=POLICY, attempt=None)
    assert c.status is MessageStatus.SENT
    assert [u.status for u in c.recipients] == [R.SENT, R.FAILED]
    assert c.last_error is not None and c.last_error.startswith(
        "expired: not delivered within 72 h"
    )
    nothing = decide(old, _result(D, D, D), now=NOW, policy=POLICY, attempt=None)
    assert nothing.status is MessageStatus.FAILED


def test_delivered_before_counts_as_sent() -> None:
    c = decide(_job(delivered_before=True), _result(F, F, F), now=NOW, policy=POLICY, attempt=None)
    assert c.status is MessageStatus.SENT


def test_quarantine_fails_with_the_fault() -> None:
    job = _job(fault="quarantined: the message cannot be loaded: its stored body is missing")
    c = quarantine(job, now=NOW)
    assert c.status is MessageStatus.FAILED
    assert c.last_error == job.fault
    assert [(u.status, u.reply) for u in c.recipients] == [(R.FAILED, job.fault)] * 2
    assert c.attempt is not None
    assert (c.attempt.engine, c.attempt.outcome, c.attempt.reply) == ("queue", "failed", job.fault)
    assert c.next_attempt_at is None
