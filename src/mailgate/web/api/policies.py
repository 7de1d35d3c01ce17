"""A tenant's sending quotas and retention: ``/tenants/{t}/policy``, ``…/apps/{app}/quota``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from mailgate.domain.policies import MAX_QUOTA, MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, Quota
from mailgate.services import erase as erase_service
from mailgate.services import policies as svc
from mailgate.web.api.schemas import Strict
from mailgate.web.deps import CtxDep, ManageApps, ManageTenant, ViewConfig

router = APIRouter(prefix="/api/v1/tenants")

RetentionStatus = Literal["sent", "failed", "cancelled", "bounced"]


class QuotaBody(Strict):
    """Messages accepted per minute and per UTC day; null: no limit."""

    per_minute: int | None = Field(None, ge=1, le=MAX_QUOTA)
    per_day: int | None = Field(None, ge=1, le=MAX_QUOTA)

    @classmethod
    def of(cls, quota: Quota) -> QuotaBody:
        return cls(per_minute=quota.per_minute, per_day=quota.per_day)


class PolicyPatch(Strict):
    """Fields left out keep their value. ``quota`` only by the instance administrator;
    a retention of null goes back to the instance setting."""

    quota: QuotaBody | None = None
    retention_days: dict[RetentionStatus, float | None] | None = Field(
        None,
        description=f"Days per final status, {MIN_RETENTION_DAYS:.4f} to {MAX_RETENTION_DAYS:g}.",
    )


class PolicyOut(BaseModel):
    quota: QuotaBody
    app_quotas: dict[str, QuotaBody]
    retention_days: dict[str, float]
    retention_overrides: dict[str, float]

    @classmethod
    def of(cls, view: svc.PolicyView) -> PolicyOut:
        return cls(
            quota=QuotaBody.of(view.quota),
            app_quotas={name: QuotaBody.of(q) for name, q in view.app_quotas.items()},
            retention_days=view.retention_days,
            retention_overrides=view.retention_overrides,
        )


@router.get("/{tenant}/policy", tags=["tenants"])
async def get_policy(ctx: CtxDep, who: ViewConfig) -> PolicyOut:
    """The tenant's sending quota, its apps' quotas and its retention per final status."""
    return PolicyOut.of(await svc.get_policy(ctx, who))


@router.patch("/{tenant}/policy", tags=["tenants"])
async def update_policy(body: PolicyPatch, ctx: CtxDep, who: ManageTenant) -> PolicyOut:
    changes: dict[str, object] = {}
    if body.quota is not None:
        changes["quota"] = {k: getattr(body.quota, k) for k in body.quota.model_fields_set}
    if body.retention_days is not None:
        changes["retention_days"] = dict(body.retention_days)
    return PolicyOut.of(await svc.update_policy(ctx, who, changes))


@router.get("/{tenant}/apps/{app}/quota", tags=["apps"])
async def get_app_quota(app: str, ctx: CtxDep, who: ViewConfig) -> QuotaBody:
    return QuotaBody.of(await svc.get_app_quota(ctx, who, app))


@router.put("/{tenant}/apps/{app}/quota", tags=["apps"])
async def set_app_quota(app: str, body: QuotaBody, ctx: CtxDep, who: ManageApps) -> QuotaBody:
    """The app's own quota (both fields; null is no limit); the tenant's quota applies too."""
    quota = await svc.set_app_quota(ctx, who, app, per_minute=body.per_minute, per_day=body.per_day)
    return QuotaBody.of(quota)


class ErasedOut(BaseModel):
    address_fingerprint: str
    messages: int
    bodies_removed: int
    deliveries_stopped: int
    inbound_removed: int


@router.delete("/{tenant}/recipients/{address}", tags=["messages"])
async def erase_recipient(address: str, ctx: CtxDep, who: ManageTenant) -> ErasedOut:
    """Erase a recipient's personal data (GDPR): their address everywhere in the delivery
    log, and the content of the final messages sent to them. Audited by a fingerprint of the
    address, never the address."""
    erased = await erase_service.erase(ctx, who, address)
    return ErasedOut(
        address_fingerprint=erase_service.address_fingerprint(address),
        messages=erased.messages,
        bodies_removed=erased.bodies_removed,
        deliveries_stopped=erased.deliveries_stopped,
        inbound_removed=erased.inbound_removed,
    )
