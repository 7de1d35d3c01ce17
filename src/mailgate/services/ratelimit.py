"""In-process sliding-window rate limits on actions that reach out on a caller's behalf.

Two actions are limited: test connection (SPEC.md section 5: "test connection is
rate-limited") and a manual IMAP sync (SPEC.md section 6). Both make Mailgate open an
outbound connection for a caller. Without a limit, a token holding
``email_configurations:manage`` could turn the instance into a port scanner or a
password-guessing relay against someone else's server, or have it pull one mailbox over and
over. Two limits apply to every attempt of an action, and both must admit it:

* per principal (API token, user or the instance admin): ``per_principal`` attempts per
  ``window_seconds``;
* per tenant (all of its principals together): ``per_tenant`` attempts per window.

=================  =============  ==========  ======
action             per principal  per tenant  window
=================  =============  ==========  ======
connection tests   10             30          60 s
inbox syncs        6              20          60 s
=================  =============  ==========  ======

The windows slide: an attempt counts for exactly ``window`` seconds after it was made, so
there is no burst at a window boundary. A refused attempt does not count. State lives in the
process (one :class:`RateLimit` per action per web application); several Mailgate processes
each apply the limits on their own, which bounds the total by the number of processes. The
actions are counted apart: syncing does not use up connection tests.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mailgate.domain.roles import Principal
from mailgate.errors import RateLimited

__all__ = [
    "PROBES_PER_PRINCIPAL",
    "PROBES_PER_TENANT",
    "PROBE_WINDOW_SECONDS",
    "SYNCS_PER_PRINCIPAL",
    "SYNCS_PER_TENANT",
    "SYNC_WINDOW_SECONDS",
    "Clock",
    "Limits",
    "ProbeLimits",
    "ProbeRateLimit",
    "RateLimit",
    "SlidingWindow",
    "SyncLimits",
    "SyncRateLimit",
    "principal_key",
]

#: Probes one principal may start per window.
PROBES_PER_PRINCIPAL = 10
#: Probes all principals of one tenant may start together per window.
PROBES_PER_TENANT = 30
#: The window of both probe limits, in seconds.
PROBE_WINDOW_SECONDS = 60.0
#: Manual inbox syncs one principal may start per window. A sync downloads mail, so it is
#: held tighter than a probe; the scheduler's own syncs are not counted.
SYNCS_PER_PRINCIPAL = 6
#: Manual inbox syncs all principals of one tenant may start together per window.
SYNCS_PER_TENANT = 20
#: The window of both sync limits, in seconds.
SYNC_WINDOW_SECONDS = 60.0

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
class Limits:
    """The two limits of one action; ``action`` names it (plural) in the 429 detail."""

    per_principal: int
    per_tenant: int
    window_seconds: float
    action: str


@dataclass(frozen=True)
class ProbeLimits(Limits):
    """The limits of test connection; the defaults are the documented ones."""

    per_principal: int = PROBES_PER_PRINCIPAL
    per_tenant: int = PROBES_PER_TENANT
    window_seconds: float = PROBE_WINDOW_SECONDS
    action: str = "connection tests"


@dataclass(frozen=True)
class SyncLimits(Limits):
    """The limits of a manual inbox sync; the defaults are the documented ones."""

    per_principal: int = SYNCS_PER_PRINCIPAL
    per_tenant: int = SYNCS_PER_TENANT
    window_seconds: float = SYNC_WINDOW_SECONDS
    action: str = "inbox syncs"


def principal_key(principal: Principal) -> str:
    """The rate-limit key of a principal: its token when it has one, else its actor name."""
    return f"token:{principal.token_id}" if principal.token_id else principal.actor


class RateLimit:
    """The two limits (per principal and per tenant) of one action in one Mailgate process."""

    def __init__(self, limits: Limits, *, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self._principals = SlidingWindow(
            self.limits.per_principal, self.limits.window_seconds, clock=clock
        )
        self._tenants = SlidingWindow(
            self.limits.per_tenant, self.limits.window_seconds, clock=clock
        )

    def acquire(self, *, principal: str, tenant: str) -> None:
        """Admit one attempt for ``principal`` in ``tenant``, or raise.

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
                    f"Too many {self.limits.action}: {who} may start {limit} per "
                    f"{self.limits.window_seconds:g} s. Try again in {retry_after} s.",
                    retry_after=retry_after,
                )
        self._principals.record(principal)
        self._tenants.record(tenant)


class ProbeRateLimit(RateLimit):
    """The test connection limits (the documented ones unless ``limits`` says otherwise)."""

    def __init__(self, limits: Limits | None = None, *, clock: Clock = time.monotonic) -> None:
        super().__init__(limits or ProbeLimits(), clock=clock)


class SyncRateLimit(RateLimit):
    """The manual inbox sync limits (the documented ones unless ``limits`` says otherwise)."""

    def __init__(self, limits: Limits | None = None, *, clock: Clock = time.monotonic) -> None:
        super().__init__(limits or SyncLimits(), clock=clock)
