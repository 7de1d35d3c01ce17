"""A tenant's policy: how much mail it (and each app) may hand in, and how long it is kept.

Quotas protect the shared queue: one tenant cannot flood it and delay every other tenant's
mail. They count *accepted messages* (a batch of 50 counts 50) in fixed windows — the current
minute and the current UTC day — and a request that would go past either window's limit is
refused whole with ``429`` and ``Retry-After`` (the seconds until that window ends). Nothing
is accepted in part, so a client that retries the same request later is never left guessing
which messages went in.

Retention is per final status. ``bounced`` is the retention of sent messages of which at
least one recipient bounced (kept apart because people look into bounces later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: The final statuses that each have a retention.
RETENTION_STATUSES: tuple[str, ...] = ("sent", "failed", "cancelled", "bounced")
#: Quota windows: name and length in seconds (the day is the UTC day).
WINDOWS: tuple[tuple[str, int], ...] = (("minute", 60), ("day", 86_400))
#: Bounds of a quota (messages per window) and of a retention (days).
MAX_QUOTA = 100_000_000
MIN_RETENTION_DAYS = 1 / 24
MAX_RETENTION_DAYS = 3650.0


@dataclass(frozen=True, slots=True)
class Quota:
    """Messages per minute and per day; None is no limit."""

    per_minute: int | None = None
    per_day: int | None = None

    @property
    def is_set(self) -> bool:
        return self.per_minute is not None or self.per_day is not None

    def limit(self, window: str) -> int | None:
        return self.per_minute if window == "minute" else self.per_day


NO_QUOTA = Quota()


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """A tenant's quota, its apps' quotas (by app id) and its retention overrides."""

    quota: Quota = NO_QUOTA
    app_quotas: Mapping[str, Quota] = field(default_factory=dict)
    retention_days: Mapping[str, float] = field(default_factory=dict)

    def effective_retention(self, instance_days: float) -> dict[str, float]:
        """Days per final status: the tenant's override, else the instance setting."""
        return {s: float(self.retention_days.get(s, instance_days)) for s in RETENTION_STATUSES}


def window_start(now_ts: float, length: int) -> int:
    """The start (epoch seconds) of the fixed window of ``length`` seconds holding ``now``."""
    return int(now_ts) // length * length


def seconds_left(now_ts: float, length: int) -> int:
    """Whole seconds until the window holding ``now`` ends (at least 1): ``Retry-After``."""
    return max(1, window_start(now_ts, length) + length - int(now_ts))


def check_quota(value: object, field_name: str) -> int | None:
    """A quota from user input, or a ValueError whose text says what is allowed."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field_name}: a whole number of messages, or null for no limit")
    if not 1 <= value <= MAX_QUOTA:
        raise ValueError(f"{field_name}: between 1 and {MAX_QUOTA:,} messages, or null")
    return value


def check_retention(value: object, field_name: str) -> float | None:
    """A retention in days from user input, or a ValueError saying what is allowed."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{field_name}: a number of days, or null for the instance setting")
    if not MIN_RETENTION_DAYS <= float(value) <= MAX_RETENTION_DAYS:
        raise ValueError(f"{field_name}: between 1 hour (0.0417) and {MAX_RETENTION_DAYS:g} days")
    return float(value)
