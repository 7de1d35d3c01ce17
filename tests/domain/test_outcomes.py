"""The outcome table: one test per row."""

from __future__ import annotations

import pytest

from mailgate.domain.delivery import OutcomeKind as K
from mailgate.domain.outcomes import (
    Failure,
    Phase,
    classify_failure,
    classify_reply,
    enhanced_status,
    parse_retry_after,
    remote_id,
    summarise,
)


@pytest.mark.parametrize(
    ("code", "text", "phase", "kind", "connection_error"),
    [
        (250, "2.0.0 Ok: queued", Phase.FINAL, K.SENT, False),
        (251, "2.1.5 forwarded", Phase.RCPT, K.SENT, False),
        (235, "2.7.0 Authentication successful", Phase.AUTH, K.SENT, False),
        (421, "4.3.2 shutting down", Phase.MAIL, K.DEFERRED, False),
        (450, "4.2.1 mailbox busy", Phase.RCPT, K.DEFERRED, False),
        (451, "4.3.0 local error", Phase.FINAL, K.DEFERRED, False),
        (452, "4.5.3 too many recipients", Phase.RCPT, K.DEFERRED, False),
        (454, "4.7.0 temporary authentication failure", Phase.AUTH, K.DEFERRED, False),
        (550, "5.1.1 no such user", Phase.RCPT, K.FAILED, False),
        (552, "5.3.4 message too big", Phase.FINAL, K.FAILED, False),
        (554, "5.7.1 rejected", Phase.FINAL, K.FAILED, False),
        (535, "5.7.8 Authentication credentials invalid", Phase.AUTH, K.AUTH_FAILED, False),
        (534, "5.7.9 Please log in with your web browser", Phase.AUTH, K.AUTH_FAILED, False),
        (538, "5.7.11 Encryption required", Phase.AUTH, K.AUTH_FAILED, False),
        (530, "5.7.0 Authentication required", Phase.MAIL, K.AUTH_FAILED, False),
        (530, "5.7.0 Must issue a STARTTLS command first", Phase.MAIL, K.FAILED, False),
        (354, "unexpected", Phase.MAIL, K.DEFERRED, True),
        (199, "garbage", Phase.RCPT, K.DEFERRED, True),
        (600, "out of range", Phase.FINAL, K.DEFERRED, True),
    ],
)
def test_reply_classification(
    code: int, text: str, phase: Phase, kind: K, connection_error: bool
) -> None:
    outcome = classify_reply(code, text, phase=phase)
    assert outcome.kind is kind
    assert outcome.connection_error is connection_error


@pytest.mark.parametrize(
    ("failure", "phase", "kind"),
    [
        (Failure.TIMEOUT, Phase.CONNECT, K.DEFERRED),
        (Failure.CONNECTION_FAILED, Phase.CONNECT, K.DEFERRED),
        (Failure.POLICY, Phase.CONNECT, K.DEFERRED),
        (Failure.TLS, Phase.STARTTLS, K.DEFERRED),
        (Failure.TIMEOUT, Phase.GREETING, K.DEFERRED),
        (Failure.PROTOCOL, Phase.EHLO, K.DEFERRED),
        (Failure.CONNECTION_LOST, Phase.RCPT, K.DEFERRED),
        (Failure.TIMEOUT, Phase.DATA, K.DEFERRED),
        (Failure.CONNECTION_LOST, Phase.MESSAGE, K.DEFERRED),
        (Failure.PROTOCOL, Phase.FINAL, K.DEFERRED),
        (Failure.TIMEOUT, Phase.FINAL, K.UNKNOWN),
        (Failure.CONNECTION_LOST, Phase.FINAL, K.UNKNOWN),
    ],
)
def test_failure_classification(failure: Failure, phase: Phase, kind: K) -> None:
    outcome = classify_failure(failure, phase=phase)
    assert outcome.kind is kind
    assert outcome.connection_error is True


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4.7.1 Greylisted, please try again in 120 seconds", 120.0),
        ("try again in 5 minutes", 300.0),
        ("Try again in 2 hours", 7200.0),
        ("4.7.0 Retry after 30s", 30.0),
        ("rate limited, please wait 90 sec before sending more", 90.0),
        ("greylisted for 300 seconds", 300.0),
        ("4.3.2 come back in 1 min", 60.0),
        ("Temporary failure, retry in 1.5 hours", 5400.0),
        ("try again in 400 days", 7 * 24 * 3600.0),
        ("4.7.1 try again later", None),
        ("4.4.1 connection timed out", None),
    ],
)
def test_retry_after(text: str, seconds: float | None) -> None:
    assert parse_retry_after(text) == seconds


def test_retry_after_comes_with_deferrals_only() -> None:
    assert classify_reply(451, "try again in 120 seconds", phase=Phase.RCPT).retry_after == 120
    assert classify_reply(550, "try again in 120 seconds", phase=Phase.RCPT).retry_after is None


@pytest.mark.parametrize(
    ("kinds", "summary"),
    [
        ([K.SENT, K.SENT], K.SENT),
        ([K.SENT, K.DEFERRED, K.FAILED], K.DEFERRED),
        ([K.SENT, K.FAILED], K.SENT),
        ([K.FAILED, K.FAILED], K.FAILED),
        ([K.DEFERRED, K.FAILED], K.DEFERRED),
        ([K.UNKNOWN, K.DEFERRED], K.UNKNOWN),
        ([K.AUTH_FAILED, K.AUTH_FAILED], K.AUTH_FAILED),
        ([], K.FAILED),
    ],
)
def test_summary(kinds: list[K], summary: K) -> None:
    assert summarise(kinds) is summary


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5.7.8 Authentication failed", "5.7.8"), ("4.2.2 full", "4.2.2"), ("Ok", None)],
)
def test_enhanced_status(text: str, expected: str | None) -> None:
    assert enhanced_status(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0.0 Ok: queued as 4F2A1B3C", "4F2A1B3C"),
        ("2.0.0 OK id=1pXyZ-0004aB-Cd", "1pXyZ-0004aB-Cd"),
        ("2.0.0 Ok", None),
    ],
)
def test_remote_id(text: str, expected: str | None) -> None:
    assert remote_id(text) == expected
