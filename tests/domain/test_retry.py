"""RetryPolicy: exponential backoff with jitter, server-stated delays, giving up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mailgate.domain.retry import RetryPolicy

NO_JITTER = RetryPolicy(jitter=0.0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(0, 60.0), (1, 60.0), (2, 120.0), (3, 240.0), (6, 1920.0), (7, 3600.0), (30, 3600.0)],
)
def test_delay_doubles_from_a_minute_up_to_an_hour(attempt: int, seconds: float) -> None:
    assert NO_JITTER.delay(attempt) == seconds


def test_jitter_spreads_within_its_bounds() -> None:
    policy = RetryPolicy(jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay(3, rng=rng) for _ in range(500)]
    assert min(delays) >= 240 * 0.8
    assert max(delays) <= 240 * 1.2
    assert max(delays) - min(delays) > 240 * 0.3  # really spread, not one value


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(120, 120.0), (0.5, 0.5), (0, 60.0), (-5, 60.0)]
)
def test_a_positive_server_stated_delay_replaces_the_backoff(
    retry_after: float, expected: float
) -> None:
    assert NO_JITTER.delay(1, retry_after=retry_after) == expected


def test_next_attempt_is_now_plus_the_delay() -> None:
    now = T0 + timedelta(minutes=5)
    assert NO_JITTER.next_attempt(created_at=T0, now=now, attempt=2) == now + timedelta(seconds=120)


def test_next_attempt_gives_up_past_the_limit() -> None:
    policy = RetryPolicy(jitter=0.0, give_up=timedelta(hours=1))
    just_in = T0 + timedelta(minutes=58)
    assert policy.next_attempt(created_at=T0, now=just_in, attempt=1, retry_after=120) == (
        T0 + timedelta(hours=1)
    )
    too_late = T0 + timedelta(minutes=59)
    assert policy.next_attempt(created_at=T0, now=too_late, attempt=1, retry_after=120) is None
