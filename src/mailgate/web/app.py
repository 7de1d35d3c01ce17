"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from mailgate import __version__
from mailgate.services import messages as messages_service
from mailgate.services.context import Context
from mailgate.web import problems
from mailgate.web.api import (
    config,
    domains,
    inbound,
    members,
    messages,
    probe,
    providers,
    signing,
    tenants,
    webhooks,
)
from mailgate.web.ui import UiOptions, mount_ui


def create_app(ctx: Context, *, ui: UiOptions | None = None) -> FastAPI:
    """An app serving the REST API and the web UI over ``ctx``; the caller owns ``ctx``'s
    lifetime."""
    app = FastAPI(
        title="Mailgate",
        version=__version__,
        description="Self-hosted, multi-tenant outbound email gateway.",
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    problems.install(app)
    for router in (
        providers.router,
        tenants.router,
        members.router,
        config.router,
        messages.router,
        probe.router,
        webhooks.router,
        signing.router,
        inbound.router,
        domains.router,
    ):
        app.include_router(router)

    @app.get("/healthz", tags=["operations"], response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> str:
        """Prometheus text format: queue depth by status over every tenant."""
        counts = await messages_service.instance_stats(ctx)
        lines = [
            "# HELP mailgate_messages Messages in the store by status.",
            "# TYPE mailgate_messages gauge",
        ]
        lines += [f'mailgate_messages{{status="{k}"}} {v}' for k, v in sorted(counts.items())]
        lines += [
            "# HELP mailgate_info Mailgate version.",
            "# TYPE mailgate_info gauge",
            f'mailgate_info{{version="{__version__}"}} 1',
        ]
        return "\n".join(lines) + "\n"

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        ready = await ctx.db.ping()
        return JSONResponse({"database": ready}, status_code=200 if ready else 503)

    mount_ui(app, ctx, options=ui)
    return app
