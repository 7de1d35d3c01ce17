"""When to try a deferred message again, and when to give up (SPEC.md section 4)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring a delay the server asked for.

    Attempt ``n`` (1-based, the attempt that just failed) waits ``base * factor**(n-1)``
    seconds, capped at ``cap``, scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so
    that many messages deferred together do not come back together. A server-stated delay
    ("try again in 120 seconds") replaces the computed one. Mail older than ``give_up`` fails
    with reason ``expired``.
    """

    base: float = 60.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.2
    give_up: timedelta = timedelta(hours=72)

    def delay(
        self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        if retry_after is not None and retry_after > 0:
            return float(retry_after)
        raw = min(self.base * self.factor ** max(attempt - 1, 0), self.cap)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return raw * spread

    def next_attempt(
        self,
        *,
        created_at: datetime,
        now: datetime,
        attempt: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> datetime | None:
        """The time of the next attempt, or None when the message should expire instead."""
        when = now + timedelta(seconds=self.delay(attempt, retry_after=retry_after, rng=rng))
        if when - created_at > self.give_up:
            return None
        return when
