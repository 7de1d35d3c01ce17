"""``GET /tenants/{t}/routing``: where mail goes now on each stage, and what is wrong."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from mailgate.domain.routing_health import RoutingHealth
from mailgate.services.routing_health import routing_health
from mailgate.web.deps import CtxDep, ViewConfig

router = APIRouter(prefix="/api/v1/tenants")


class RouteOut(BaseModel):
    stage: str | None
    server_id: str | None
    server_name: str | None
    reason: str | None


class ProblemOut(BaseModel):
    code: str
    severity: str
    message: str
    action: str
    stage: str | None
    server_id: str | None


class RoutingOut(BaseModel):
    ok: bool
    routes: list[RouteOut]
    problems: list[ProblemOut]

    @classmethod
    def of(cls, health: RoutingHealth) -> RoutingOut:
        return cls(
            ok=health.ok,
            routes=[
                RouteOut(
                    stage=r.stage,
                    server_id=r.server_id,
                    server_name=r.server_name,
                    reason=r.reason.value if r.reason else None,
                )
                for r in health.routes
            ],
            problems=[
                ProblemOut(
                    code=p.code,
                    severity=p.severity.value,
                    message=p.message,
                    action=p.action,
                    stage=p.stage,
                    server_id=p.server_id,
                )
                for p in health.problems
            ],
        )


@router.get("/{tenant}/routing", tags=["tenants"])
async def get_routing(ctx: CtxDep, who: ViewConfig) -> RoutingOut:
    """Per stage and for mail without a stage: the server mail from the default account
    would use now (``reason``: the stage's server, the account's, or the tenant default),
    and every problem (no route, credentials refused, mail held, unreachable, no DKIM key),
    each with the action that fixes it."""
    return RoutingOut.of(await routing_health(ctx, who))
