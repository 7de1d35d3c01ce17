"""Test connection endpoints of mail servers (API.md, "Mail servers"; SPEC.md section 5).

``POST …/mail-servers/{id}/test`` tests a saved server with its stored secrets;
``POST …/mail-servers/test`` tests the settings of the add/edit dialog before they are saved.
Both answer 200 with the probe report, whether the server worked or not: a failed test is a
result, not an error. 4xx is kept for requests that cannot be tested: 403 without
``email_configurations:manage`` (checked before anything else, so no connection is opened),
404 for another tenant's objects, 422 for settings that could not be saved (port 25
included, naming ``port``) and 429 with ``Retry-After`` past the rate limits.
"""

from __future__ import annotations

from fastapi import APIRouter

from mailgate.engines.probe_report import ProbeReport
from mailgate.web.api.schemas import MailServerTestIn, ProbeReportOut
from mailgate.web.deps import CtxDep, ManageConfig, ProberDep

router = APIRouter(prefix="/api/v1/tenants/{tenant}")


def _out(report: ProbeReport) -> ProbeReportOut:
    return ProbeReportOut.model_validate(report.to_dict())


@router.post("/mail-servers/test", tags=["mail servers"])
async def test_unsaved_server(
    body: MailServerTestIn, ctx: CtxDep, who: ManageConfig, prober: ProberDep
) -> ProbeReportOut:
    """Test unsaved settings: connect, TLS, EHLO, STARTTLS, AUTH and QUIT; no mail is sent.

    With ``server_id``, omitted or blank secrets are those of that stored server, provided
    every field deciding where or how a secret travels (host, port, username, security,
    certificate checks, CAs, API and token URLs) is unchanged (else 422 naming the secret).
    """
    fields = body.model_dump(exclude_unset=True)
    return _out(await prober.test_unsaved(ctx, who, fields))


@router.post("/mail-servers/{server_id}/test", tags=["mail servers"])
async def test_saved_server(
    server_id: str, ctx: CtxDep, who: ManageConfig, prober: ProberDep
) -> ProbeReportOut:
    """Test a saved server with its stored settings and secrets; no mail is sent."""
    return _out(await prober.test_saved(ctx, who, server_id))
