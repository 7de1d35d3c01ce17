"""In-process sliding-window rate limits (SPEC.md section 5: "test connection is rate-limited").

A connection probe makes Mailgate open an outbound connection on a caller's behalf. Without a
limit, a token holding ``email_configurations:manage`` could turn the instance into a port
scanner or a password-guessing relay against someone else's mail server. Two limits apply to
every probe, and both must admit it:

* per principal (API token, user or the instance admin): :data:`PROBES_PER_PRINCIPAL`
  probes per :data:`PROBE_WINDOW_SECONDS`;
* per tenant (all of its principals together): :data:`PROBES_PER_TENANT` per window.

The windows slide: an attempt counts for exactly ``window`` seconds after it was made, so
there is no burst at a window boundary. A refused attempt does not count. State lives in the
process (one :class:`ProbeRateLimit` per web application); several Mailgate processes each
apply the limits on their own, which bounds the total by the number of processes.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mailgate.errors import RateLimited

__all__ = [
    "PROBES_PER_PRINCIPAL",
    "PROBES_PER_TENANT",
    "PROBE_WINDOW_SECONDS",
    "Clock",
    "ProbeRateLimit",
    "SlidingWindow",
]

#: Probes one principal may start per window.
PROBES_PER_PRINCIPAL = 10
#: Probes all principals of one tenant may start together per window.
PROBES_PER_TENANT = 30
#: The window of both limits, in seconds.
PROBE_WINDOW_SECONDS = 60.0

#: A monotonic clock in seconds (``time.monotonic``); tests pass a fake one.
Clock = Callable[[], float]


class SlidingWindow:
    """At most ``limit`` events per key within any ``window`` seconds.

    :meth:`wait` says how long a key must wait before its next event is admitted (``0.0``:
    now); :meth:`record` counts an event. Keys with no event inside the window are forgotten,
    so memory is bounded by the keys active in the last ``window`` seconds.
    """

    def __init__(self, limit: int, window: float, *, clock: Clock = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a sliding window needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may have another event; ``0.0`` when it may now."""
        events = self._prune(key, self._clock())
        if events is None or len(events) < self.limit:
            return 0.0
        # The oldest event inside the window is the next to leave it.
        return max(events[-self.limit] + self.window - self._clock(), 0.0)

    def record(self, key: str) -> None:
        """Count one event for ``key`` now."""
        self._events.setdefault(key, deque()).append(self._clock())

    def _prune(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        horizon = now - self.window
        while events and events[0] <= horizon:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """The limits of one :class:`ProbeRateLimit`; the defaults are the documented ones."""

    per_principal: int = PROBES_PER_PRINCIPAL
    per_tenant: int = PROBES_PER_TENANT
    window_seconds: float = PROBE_WINDOW_SECONDS


class ProbeRateLimit:
    """The two probe limits (per principal and per tenant) of one Mailgate process."""

    def __init__(self, limits: ProbeLimits | None = None, *, clock: Clock = time.monotonic) -> None:
        self.limits = limits or ProbeLimits()
        self._principals = SlidingWindow(
            self.limits.per_principal, self.limits.window_seconds, clock=clock
        )
        self._tenants = SlidingWindow(
            self.limits.per_tenant, self.limits.window_seconds, clock=clock
        )

    def acquire(self, *, principal: str, tenant: str) -> None:
        """Admit one probe for ``principal`` in ``tenant``, or raise.

        Raises :class:`~mailgate.errors.RateLimited` with ``retry_after`` (whole seconds,
        at least 1) when either limit is reached; nothing is counted then.
        """
        waits = (
            (self._principals.wait(principal), "you", self.limits.per_principal),
            (self._tenants.wait(tenant), "this tenant", self.limits.per_tenant),
        )
        for wait, who, limit in waits:
            if wait > 0:
                retry_after = max(math.ceil(wait), 1)
                raise RateLimited(
                    f"Too many connection tests: {who} may start {limit} per "
                    f"{self.limits.window_seconds:g} s. Try again in {retry_after} s.",
                    retry_after=retry_after,
                )
        self._principals.record(principal)
        self._tenants.record(tenant)
