"""Whether the delivery workers of this process are claiming mail (pure; the clock is passed in).

Each claim loop reports every pass it completes (:meth:`WorkerHealth.beat`), every failed
pass (:meth:`WorkerHealth.failed`) and its end (:meth:`WorkerHealth.ended`). A loop is
*claiming* when it is running, its last pass succeeded, and that pass ended less than
``stall_after`` seconds ago; ``/readyz`` answers 503 and ``/metrics`` shows the count as soon
as one loop is not. Loops are keyed by a slot (``worker-0`` …) that a restarted worker takes
over, so a dead loop stays visible until its replacement has claimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A claim loop passes at least once per poll interval (1 s by default); one that has not
#: passed for this long is stuck (a database lock held by another program, a hung query).
STALL_AFTER = 30.0


@dataclass(slots=True)
class LoopState:
    """What one claim loop last reported."""

    started_at: float
    last_pass_at: float | None = None
    running: bool = True
    #: Failed passes since the last good one (0 when the loop is healthy).
    failures: int = 0
    #: The kind of the last failure (an exception class name; never its text, which may
    #: carry SQL): readiness answers are public.
    last_failure: str | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    loops: int
    claiming: int
    oldest_pass_age: float | None
    reasons: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return self.claiming == self.loops


@dataclass(slots=True)
class WorkerHealth:
    """The claim loops of one process and the counters ``/metrics`` exports."""

    stall_after: float = STALL_AFTER
    loops: dict[str, LoopState] = field(default_factory=dict)
    claim_failures_total: int = 0
    restarts_total: int = 0
    quarantined_total: int = 0

    def started(self, slot: str, *, now: float, restart: bool = False) -> None:
        self.loops[slot] = LoopState(started_at=now)
        if restart:
            self.restarts_total += 1

    def beat(self, slot: str, *, now: float) -> None:
        state = self.loops.get(slot)
        if state is not None:
            state.last_pass_at = now
            state.failures = 0
            state.last_failure = None

    def failed(self, slot: str, kind: str) -> None:
        self.claim_failures_total += 1
        state = self.loops.get(slot)
        if state is not None:
            state.failures += 1
            state.last_failure = kind

    def ended(self, slot: str) -> None:
        state = self.loops.get(slot)
        if state is not None:
            state.running = False

    def quarantined(self, count: int) -> None:
        self.quarantined_total += count

    def report(self, *, now: float) -> HealthReport:
        claiming = 0
        reasons: list[str] = []
        oldest: float | None = None
        for slot, state in sorted(self.loops.items()):
            since = state.last_pass_at if state.last_pass_at is not None else state.started_at
            age = now - since
            oldest = age if oldest is None else max(oldest, age)
            if not state.running:
                reasons.append(f"{slot}: not running")
            elif state.failures:
                reasons.append(
                    f"{slot}: claiming failed {state.failures} time(s) ({state.last_failure})"
                )
            elif age > self.stall_after:
                reasons.append(f"{slot}: no claim pass for {age:.0f} s")
            else:
                claiming += 1
        return HealthReport(len(self.loops), claiming, oldest, tuple(reasons))


#: How often a process with delivery workers writes its heartbeat (seconds).
HEARTBEAT_SECONDS = 5.0
#: A process whose last heartbeat is older than this is not counted as alive.
HEARTBEAT_STALE_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class FleetReport:
    """The delivery worker processes of the whole deployment, from their heartbeats."""

    #: Processes with a heartbeat within :data:`HEARTBEAT_STALE_AFTER`.
    alive: int
    #: Of their claim loops, the ones claiming without error at their last heartbeat.
    claiming: int
    #: ``MAILGATE_EXPECT_WORKERS`` (None: not set).
    expected: int | None
    problem: str | None

    @property
    def ready(self) -> bool:
        return self.problem is None


def assess_fleet(
    *, alive: int, claiming: int, expected: int | None, oldest_due_age: float | None
) -> FleetReport:
    """Whether mail is being delivered somewhere.

    With ``expected`` set (``MAILGATE_EXPECT_WORKERS``), fewer live worker processes than
    that is a problem (0 disables the check). Unset, it is a problem only when mail has been
    due for longer than :data:`HEARTBEAT_STALE_AFTER` and no worker process is alive: an
    idle deployment, or one whose workers are starting, stays ready.
    """
    start = (
        "start `mailgate worker` (or `mailgate serve` with MAILGATE_WORKERS above 0) against "
        "this database"
    )
    problem: str | None = None
    if expected is not None:
        if alive < expected:
            problem = (
                f"{alive} delivery worker process(es) alive, {expected} expected "
                f"(MAILGATE_EXPECT_WORKERS): {start}"
            )
    elif alive == 0 and oldest_due_age is not None and oldest_due_age > HEARTBEAT_STALE_AFTER:
        problem = (
            f"mail has been due for {oldest_due_age:.0f} s and no delivery worker process is "
            f"alive: {start}"
        )
    return FleetReport(alive, claiming, expected, problem)
