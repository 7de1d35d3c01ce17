"""The FastAPI application factory."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from mailgate import __version__
from mailgate import metrics as process_metrics
from mailgate.services import keys as key_service
from mailgate.services import messages as messages_service
from mailgate.services import ops_metrics
from mailgate.services.context import Context
from mailgate.web import problems
from mailgate.web.api import (
    config,
    domains,
    events,
    inbound,
    members,
    messages,
    policies,
    probe,
    providers,
    routing,
    signing,
    suppressions,
    tenants,
    webhooks,
)
from mailgate.web.guard import RequestGuard, RequestLimits, protected_routes
from mailgate.web.ui import UiOptions, mount_ui


def create_app(
    ctx: Context, *, ui: UiOptions | None = None, limits: RequestLimits | None = None
) -> FastAPI:
    """An app serving the REST API and the web UI over ``ctx``; the caller owns ``ctx``'s
    lifetime. ``limits`` caps request bodies (default: from the instance's message size)."""
    app = FastAPI(
        title="Mailgate",
        version=__version__,
        description="Self-hosted, multi-tenant outbound email gateway.",
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    problems.install(app)
    routers = (
        providers.router,
        tenants.router,
        members.router,
        config.router,
        messages.router,
        probe.router,
        webhooks.router,
        signing.router,
        inbound.router,
        policies.router,
        routing.router,
        suppressions.router,
        events.router,
        domains.router,
    )
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        RequestGuard,
        limits=limits or RequestLimits.for_message_size(ctx.policy.max_message_bytes),
        protected=protected_routes(routers),
    )

    @app.get("/healthz", tags=["operations"], response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> str:
        """Prometheus text format: queue depth by status over every tenant, the state of
        this process's delivery workers, gauges read from the database and the counters and
        histograms of :mod:`mailgate.metrics` (docs/operations.md lists them)."""
        counts = await messages_service.instance_stats(ctx)
        lines = [
            "# HELP mailgate_messages Messages in the store by status.",
            "# TYPE mailgate_messages gauge",
        ]
        lines += [f'mailgate_messages{{status="{k}"}} {v}' for k, v in sorted(counts.items())]
        health = ctx.workers
        report = health.report(now=time.monotonic())
        lines += [
            "# HELP mailgate_worker_loops Delivery worker claim loops in this process.",
            "# TYPE mailgate_worker_loops gauge",
            f"mailgate_worker_loops {report.loops}",
            "# HELP mailgate_worker_loops_claiming Claim loops that claimed recently without "
            "error.",
            "# TYPE mailgate_worker_loops_claiming gauge",
            f"mailgate_worker_loops_claiming {report.claiming}",
            "# HELP mailgate_worker_not_claiming 1 when a claim loop is dead, failing or stuck.",
            "# TYPE mailgate_worker_not_claiming gauge",
            f"mailgate_worker_not_claiming {0 if report.ready else 1}",
            "# HELP mailgate_worker_claim_pass_age_seconds Age of the oldest last claim pass.",
            "# TYPE mailgate_worker_claim_pass_age_seconds gauge",
            f"mailgate_worker_claim_pass_age_seconds {report.oldest_pass_age or 0:.3f}",
            "# HELP mailgate_worker_claim_failures_total Claim passes that failed.",
            "# TYPE mailgate_worker_claim_failures_total counter",
            f"mailgate_worker_claim_failures_total {health.claim_failures_total}",
            "# HELP mailgate_worker_restarts_total Delivery workers restarted after dying.",
            "# TYPE mailgate_worker_restarts_total counter",
            f"mailgate_worker_restarts_total {health.restarts_total}",
            "# HELP mailgate_messages_quarantined_total Claimed messages failed because they "
            "could not be loaded.",
            "# TYPE mailgate_messages_quarantined_total counter",
            f"mailgate_messages_quarantined_total {health.quarantined_total}",
        ]
        lines += [
            "# HELP mailgate_info Mailgate version.",
            "# TYPE mailgate_info gauge",
            f'mailgate_info{{version="{__version__}"}} 1',
        ]
        lines += await ops_metrics.gauge_lines(ctx)
        return "\n".join(lines) + "\n" + process_metrics.exposition()

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """200 when this process can serve: the database answers, the keys open the stored
        secrets, every delivery worker of this process claims, and the deployment has the
        live worker processes it needs (:func:`~mailgate.domain.worker_health.assess_fleet`);
        503 naming the reasons otherwise."""
        ready = await ctx.db.ping()
        report = ctx.workers.report(now=time.monotonic())
        body: dict[str, object] = {"database": ready}
        if ready:
            problem = await key_service.key_problem(ctx.db, ctx.box)
            body["keys"] = problem is None
            if problem is not None:
                body["reason"] = problem
                ready = False
        if report.loops:
            body["workers"] = {
                "loops": report.loops,
                "claiming": report.claiming,
                "problems": list(report.reasons),
            }
        if ready:
            fleet = await ops_metrics.fleet(ctx)
            body["worker_processes"] = {
                "alive": fleet.alive,
                "claiming_loops": fleet.claiming,
                "expected": fleet.expected,
                "problem": fleet.problem,
            }
            ready = fleet.ready
        ok = ready and report.ready
        return JSONResponse(body, status_code=200 if ok else 503)

    mount_ui(app, ctx, options=ui)
    return app
