"""Tenant policies: sending quotas (tenant and app) and retention per final status.

Who may change what: a tenant's own quota only the instance administrator (a tenant must
not lift the limit that protects everyone else's mail); retention the tenant's owner; an
app's quota whoever manages apps (an app may be held below its tenant's quota, never above:
both apply). Every change is in the audit log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailgate.domain.policies import (
    RETENTION_STATUSES,
    WINDOWS,
    Quota,
    TenantPolicy,
    check_quota,
    check_retention,
    seconds_left,
    window_start,
)
from mailgate.errors import FieldError, PermissionDenied, RateLimited, ValidationFailed
from mailgate.services import audit_trail
from mailgate.services.context import Caller, Context
from mailgate.storage import apps
from mailgate.storage import policies as store
from mailgate.storage.base import Tx, utcnow


@dataclass(frozen=True, slots=True)
class PolicyView:
    """A tenant's policy as the API shows it: app quotas by app name, retention resolved."""

    quota: Quota
    app_quotas: dict[str, Quota]
    retention_days: dict[str, float]
    retention_overrides: dict[str, float]


async def get_policy(ctx: Context, caller: Caller) -> PolicyView:
    async with ctx.db.read() as tx:
        policy = await store.get_policy(tx, caller.tenant_id)
        names = {a.id: a.name for a in await apps.list_apps(tx, caller.tenant_id)}
    return _view(ctx, policy, names)


def _view(ctx: Context, policy: TenantPolicy, names: Mapping[str, str]) -> PolicyView:
    return PolicyView(
        quota=policy.quota,
        app_quotas={names[i]: q for i, q in policy.app_quotas.items() if i in names},
        retention_days=policy.effective_retention(ctx.policy.retention_days),
        retention_overrides=dict(policy.retention_days),
    )


def _errors(checks: list[tuple[str, Any, Any]]) -> dict[str, Any]:
    """Run each (field, value, checker); a ValidationFailed naming every bad field."""
    out: dict[str, Any] = {}
    problems: list[FieldError] = []
    for name, value, check in checks:
        try:
            out[name] = check(value, name)
        except ValueError as exc:
            problems.append(FieldError(name, str(exc).split(": ", 1)[-1]))
    if problems:
        raise ValidationFailed(
            "; ".join(f"{p.field}: {p.message}" for p in problems), errors=problems
        )
    return out


async def update_policy(ctx: Context, caller: Caller, changes: Mapping[str, Any]) -> PolicyView:
    """Apply a PATCH: ``quota`` ({per_minute, per_day}) and/or ``retention_days``
    ({status: days or null}); fields left out keep their value, null resets."""
    quota_in = changes.get("quota")
    retention_in = changes.get("retention_days")
    if quota_in is not None and not caller.principal.is_instance_admin:
        raise PermissionDenied(
            "Only the instance administrator sets a tenant's quota; an app's quota is set "
            "with PUT …/apps/{app}/quota."
        )
    checks: list[tuple[str, Any, Any]] = []
    if isinstance(quota_in, Mapping):
        checks += [(f"quota.{k}", v, check_quota) for k, v in quota_in.items()]
    if isinstance(retention_in, Mapping):
        for status, days in retention_in.items():
            if status not in RETENTION_STATUSES:
                raise ValidationFailed.field(
                    f"retention_days.{status}",
                    f"not a final status; use {', '.join(RETENTION_STATUSES)}",
                )
            checks.append((f"retention_days.{status}", days, check_retention))
    clean = _errors(checks)
    changed: list[str] = []
    async with ctx.db.transaction() as tx:
        policy = await store.get_policy(tx, caller.tenant_id)
        quota = policy.quota
        if isinstance(quota_in, Mapping):
            quota = Quota(
                per_minute=clean.get("quota.per_minute", quota.per_minute)
                if "per_minute" in quota_in
                else quota.per_minute,
                per_day=clean.get("quota.per_day", quota.per_day)
                if "per_day" in quota_in
                else quota.per_day,
            )
            changed += [f"quota.{k}" for k in quota_in]
        retention = dict(policy.retention_days)
        if isinstance(retention_in, Mapping):
            for status in retention_in:
                days = clean[f"retention_days.{status}"]
                if days is None:
                    retention.pop(status, None)
                else:
                    retention[status] = days
                changed.append(f"retention_days.{status}")
        await store.save_policy(tx, caller.tenant_id, quota, retention, now=utcnow())
        await audit_trail.record(
            tx,
            caller,
            "tenant.policy.update",
            "tenant",
            caller.tenant_id,
            caller.tenant.slug,
            changed,
        )
        policy = await store.get_policy(tx, caller.tenant_id)
        names = {a.id: a.name for a in await apps.list_apps(tx, caller.tenant_id)}
    return _view(ctx, policy, names)


async def set_app_quota(
    ctx: Context, caller: Caller, app_name: str, *, per_minute: Any, per_day: Any
) -> Quota:
    clean = _errors([("per_minute", per_minute, check_quota), ("per_day", per_day, check_quota)])
    quota = Quota(per_minute=clean["per_minute"], per_day=clean["per_day"])
    async with ctx.db.transaction() as tx:
        app = await apps.get_app(tx, caller.tenant_id, app_name)
        await store.save_app_quota(tx, caller.tenant_id, app.id, quota, now=utcnow())
        await audit_trail.record(
            tx, caller, "app.quota.update", "app", app.id, app.name, ["per_minute", "per_day"]
        )
    return quota


async def get_app_quota(ctx: Context, caller: Caller, app_name: str) -> Quota:
    async with ctx.db.read() as tx:
        app = await apps.get_app(tx, caller.tenant_id, app_name)
        policy = await store.get_policy(tx, caller.tenant_id)
    return policy.app_quotas.get(app.id, Quota())


async def take_quota(
    tx: Tx, tenant_id: str, app_ids: Sequence[str | None], *, now: datetime
) -> None:
    """Count the messages being accepted (one app id per message) against the tenant's and
    their apps' quotas, in the accepting transaction; RateLimited (429 with Retry-After)
    when any window would go past its limit — then nothing of the request is accepted."""
    policy = await store.get_policy(tx, tenant_id)
    if not policy.quota.is_set and not policy.app_quotas:
        return
    ts = now.timestamp()
    per_app = Counter(a for a in app_ids if a is not None and a in policy.app_quotas)
    scopes: list[tuple[str, str, Quota, int]] = [
        (f"t:{tenant_id}", "this tenant", policy.quota, len(app_ids))
    ]
    scopes += [(f"a:{app}", "this app", policy.app_quotas[app], n) for app, n in per_app.items()]
    for scope, who, quota, count in scopes:
        for window, length in WINDOWS:
            limit = quota.limit(window)
            if limit is None:
                continue
            if not await store.take(
                tx, f"{scope}:{window}", window_start(ts, length), limit=limit, count=count
            ):
                wait = seconds_left(ts, length)
                raise RateLimited(
                    f"The sending quota of {who} is {limit:,} message(s) per {window}; "
                    f"this request ({count:,}) does not fit. Try again in {wait} s.",
                    retry_after=wait,
                )
