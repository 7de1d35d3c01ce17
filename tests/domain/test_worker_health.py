"""When the delivery workers of a process count as claiming (``/readyz``, ``/metrics``)."""

from __future__ import annotations

from mailgate.domain.worker_health import WorkerHealth


def test_no_loops_is_ready() -> None:
    report = WorkerHealth().report(now=100.0)
    assert (report.loops, report.claiming, report.ready) == (0, 0, True)


def test_a_loop_that_passes_is_claiming() -> None:
    health = WorkerHealth(stall_after=30.0)
    health.started("worker-0", now=0.0)
    health.beat("worker-0", now=25.0)
    report = health.report(now=50.0)
    assert report.ready
    assert report.oldest_pass_age == 25.0


def test_a_failed_pass_is_not_claiming_until_a_good_one() -> None:
    health = WorkerHealth()
    health.started("worker-0", now=0.0)
    health.failed("worker-0", "OperationalError")
    report = health.report(now=1.0)
    assert not report.ready
    assert report.reasons == ("worker-0: claiming failed 1 time(s) (OperationalError)",)
    health.beat("worker-0", now=2.0)
    assert health.report(now=3.0).ready
    assert health.claim_failures_total == 1


def test_a_stuck_loop_is_not_claiming() -> None:
    health = WorkerHealth(stall_after=30.0)
    health.started("worker-0", now=0.0)
    health.started("worker-1", now=0.0)
    health.beat("worker-0", now=10.0)
    health.beat("worker-1", now=39.0)
    report = health.report(now=41.0)
    assert (report.loops, report.claiming) == (2, 1)
    assert report.reasons == ("worker-0: no claim pass for 31 s",)


def test_a_dead_loop_stays_visible_until_replaced() -> None:
    health = WorkerHealth()
    health.started("worker-0", now=0.0)
    health.beat("worker-0", now=1.0)
    health.ended("worker-0")
    assert health.report(now=2.0).reasons == ("worker-0: not running",)
    health.started("worker-0", now=3.0, restart=True)
    assert health.report(now=4.0).ready
    assert health.restarts_total == 1


def test_quarantined_rows_are_counted() -> None:
    health = WorkerHealth()
    health.quarantined(2)
    health.quarantined(1)
    assert health.quarantined_total == 3


def test_fleet_expected_workers_and_due_mail_without_workers() -> None:
    from mailgate.domain.worker_health import HEARTBEAT_STALE_AFTER, assess_fleet

    assert assess_fleet(alive=1, claiming=1, expected=1, oldest_due_age=None).ready
    short = assess_fleet(alive=1, claiming=2, expected=2, oldest_due_age=None)
    assert short.problem is not None and short.problem.startswith("1 delivery worker process(es)")
    assert assess_fleet(alive=0, claiming=0, expected=0, oldest_due_age=9999).ready
    # Unset: only mail due past the staleness window with nobody alive is a problem.
    assert assess_fleet(alive=0, claiming=0, expected=None, oldest_due_age=None).ready
    assert assess_fleet(
        alive=0, claiming=0, expected=None, oldest_due_age=HEARTBEAT_STALE_AFTER - 1
    ).ready
    late = assess_fleet(
        alive=0, claiming=0, expected=None, oldest_due_age=HEARTBEAT_STALE_AFTER + 5
    )
    assert late.problem is not None and late.problem.startswith("mail has been due for 35 s")
    assert assess_fleet(alive=1, claiming=0, expected=None, oldest_due_age=3600).ready
