"""Claimed mail whose mail server was deleted: route it again by the routing now.

A message keeps the server it was routed to at acceptance. When that server is gone (deleted
with ``mail_to=reroute`` while no route existed, or by a delete that predates reassignment),
its next attempt routes it again by the rules of acceptance
(:func:`mailgate.domain.routing.route_again`): the stage's server, else the account's, else
the tenant default. A message that finds a server is moved to it before the attempt, and its
delivery log gets a ``rerouted`` entry (engine ``queue``) naming the rule; one that finds none
is deferred by the retry policy with the reason — what to configure — so the mail goes out on
the attempt after the configuration is fixed, or expires after the give-up time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from mailgate.domain.delivery import DeliveryResult, MessageStatus, OutcomeKind
from mailgate.domain.retry import RetryPolicy
from mailgate.domain.routing import RouteAgain, TenantRouting, route_again
from mailgate.storage.queue import AttemptRecord, Completion, Job
from mailgate.worker.decide import decide


@dataclass(frozen=True, slots=True)
class Rerouted:
    """What routing the lost jobs again decided."""

    #: Jobs now bound to a live server, with the delivery-log note of each move.
    moved: tuple[tuple[Job, AttemptRecord], ...]
    #: Completions of jobs that found no server (deferred with the reason).
    unroutable: tuple[Completion, ...]


def _note(
    job: Job, *, server_id: str | None, outcome: str, reply: str, now: datetime
) -> AttemptRecord:
    return AttemptRecord(
        started_at=now,
        finished_at=now,
        server_id=server_id,
        engine="queue",
        outcome=outcome,
        code=None,
        reply=reply[:2000],
        tls_version=None,
        duration_ms=0.0,
        possible_duplicate=job.possible_duplicate,
        transcript="",
    )


def _moved_reply(job: Job, route: RouteAgain, name: str) -> str:
    was = f" {job.server_id}" if job.server_id else ""
    return f"rerouted: its mail server{was} was deleted; now {name!r}, {route.via}"


def reroute(
    lost: Iterable[Job],
    routing: Mapping[str, TenantRouting],
    *,
    now: datetime,
    policy: RetryPolicy,
) -> Rerouted:
    """Route each job of ``lost`` (its server is gone) again; see the module docstring."""
    moved: list[tuple[Job, AttemptRecord]] = []
    unroutable: list[Completion] = []
    empty = TenantRouting({}, {}, None)
    for job in lost:
        tenant = routing.get(job.tenant_id, empty)
        route = route_again(tenant, stage=job.stage, account_id=job.account_id)
        if route.server_id is not None:
            name = tenant.server_names.get(route.server_id, route.server_id)
            note = _note(
                job,
                server_id=route.server_id,
                outcome="rerouted",
                reply=_moved_reply(job, route, name),
                now=now,
            )
            moved.append((replace(job, server_id=route.server_id), note))
            continue
        orphan = replace(job, server_id=None)
        note = _note(job, server_id=None, outcome="deferred", reply=route.reason, now=now)
        result = DeliveryResult(kind=OutcomeKind.DEFERRED, reply=route.reason)
        done = decide(orphan, result, now=now, policy=policy, attempt=note)
        if done.status is not MessageStatus.DEFERRED:  # past the give-up time: failed
            done = replace(
                done, attempt=replace(note, outcome="failed", reply=done.last_error or "")
            )
        unroutable.append(done)
    return Rerouted(tuple(moved), tuple(unroutable))
