"""Sending-domain checks: what DNS says about a domain the tenant sends from."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from mailgate.domain.domain_checks import Check, DomainReport
from mailgate.services import domain_checks as checks_svc
from mailgate.web.deps import CtxDep, ViewConfig

router = APIRouter(prefix="/api/v1/tenants/{tenant}/domains", tags=["domains"])


class RecordOut(BaseModel):
    type: str
    name: str
    value: str


class DomainCheckOut(BaseModel):
    kind: str
    name: str
    ok: bool
    status: str
    detail: str
    found: list[str]
    publish: RecordOut | None

    @classmethod
    def of(cls, check: Check) -> DomainCheckOut:
        publish = None
        if check.publish is not None:
            p = check.publish
            publish = RecordOut(type=p.type, name=p.name, value=p.value)
        return cls(
            kind=check.kind,
            name=check.name,
            ok=check.ok,
            status=check.status.value,
            detail=check.detail,
            found=list(check.found),
            publish=publish,
        )


class DomainReportOut(BaseModel):
    """``ok`` when every check passes (or only warns)."""

    domain: str
    ok: bool
    checks: list[DomainCheckOut]

    @classmethod
    def of(cls, report: DomainReport) -> DomainReportOut:
        return cls(
            domain=report.domain,
            ok=report.ok,
            checks=[DomainCheckOut.of(c) for c in report.checks],
        )


@router.get("/{domain}/check", response_model=DomainReportOut)
async def check(domain: str, ctx: CtxDep, who: ViewConfig) -> DomainReportOut:
    """Look the domain up in DNS: each DKIM key's record, SPF for the servers mail from the
    domain is routed through, the DMARC policy, DKIM alignment with From, and the MX of the
    bounce domain. Each check has ``status`` pass, warn, fail or error (DNS gave no answer)
    and, unless it passes, ``publish``: the exact record to publish. 422 naming ``domain``
    when it is not a domain name."""
    return DomainReportOut.of(await checks_svc.check_domain(ctx, who, domain))
