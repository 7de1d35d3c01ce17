"""Provider event webhooks: the endpoint SendGrid posts its Event Webhook to (signed, no
token), and the verification key of each SendGrid mail server."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from mailgate.errors import TooLarge
from mailgate.services import provider_events as svc
from mailgate.web.api.schemas import Strict
from mailgate.web.deps import CtxDep, ManageConfig, ViewConfig

router = APIRouter(
    prefix="/api/v1/tenants/{tenant}/mail-servers/{server_id}/sendgrid-events",
    tags=["provider events"],
)

#: Largest post accepted (SendGrid batches events into posts far smaller than this).
MAX_BODY_BYTES = 5 * 1024 * 1024


class EventKeyIn(Strict):
    public_key: str = Field(
        min_length=1,
        max_length=svc.MAX_KEY_CHARS,
        description="SendGrid's Signed Event Webhook verification key (base64 DER or PEM).",
    )


class EventKeyOut(BaseModel):
    server_id: str
    public_key: str | None
    path: str = Field(description="Where SendGrid posts: Mailgate's public base URL + this.")


class ReceivedOut(BaseModel):
    received: int
    applied: int
    duplicates: int
    unmatched: int
    ignored: int


def _out(info: svc.KeyInfo) -> EventKeyOut:
    return EventKeyOut(server_id=info.server_id, public_key=info.public_key, path=info.path)


@router.post(
    "", responses={401: {"description": "unsigned"}, 403: {"description": "bad or stale signature"}}
)
async def receive(
    tenant: str,
    server_id: str,
    request: Request,
    ctx: CtxDep,
    signature: Annotated[
        str | None, Header(alias=svc.SIGNATURE_HEADER, include_in_schema=False)
    ] = None,
    timestamp: Annotated[
        str | None, Header(alias=svc.TIMESTAMP_HEADER, include_in_schema=False)
    ] = None,
) -> ReceivedOut:
    """SendGrid's Event Webhook for this mail server. No bearer token: the post must carry
    SendGrid's ECDSA signature (``X-Twilio-Email-Event-Webhook-Signature`` over
    ``X-Twilio-Email-Event-Webhook-Timestamp`` + the body), verified with the server's
    key. A retried post (same ``sg_event_id``) changes nothing."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise TooLarge.field("body", f"at most {MAX_BODY_BYTES} bytes")
    got = await svc.receive(
        ctx, slug=tenant, server_id=server_id, signature=signature, timestamp=timestamp, body=body
    )
    return ReceivedOut(
        received=got.received,
        applied=got.applied,
        duplicates=got.duplicates,
        unmatched=got.unmatched,
        ignored=got.ignored,
    )


@router.get("/key")
async def get_key(server_id: str, ctx: CtxDep, who: ViewConfig) -> EventKeyOut:
    """The server's verification key (public) and the path SendGrid posts to."""
    return _out(await svc.get_key(ctx, who, server_id))


@router.put("/key")
async def put_key(server_id: str, body: EventKeyIn, ctx: CtxDep, who: ManageConfig) -> EventKeyOut:
    """Set (or replace) the verification key; only for ``sendgrid`` servers."""
    return _out(await svc.set_key(ctx, who, server_id, body.public_key))


@router.delete("/key", status_code=204)
async def delete_key(server_id: str, ctx: CtxDep, who: ManageConfig) -> Response:
    """Remove the key: posts are refused (404) from then on."""
    await svc.delete_key(ctx, who, server_id)
    return Response(status_code=204)
