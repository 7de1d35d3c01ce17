"""The SendGrid Event Webhook: each SendGrid mail server gets an endpoint that SendGrid posts
its events to, verified with the server's verification key (docs/deliverability.md).

* **Key.** SendGrid's "Signed Event Webhook" verification key: an ECDSA P-256 public key,
  base64 DER SubjectPublicKeyInfo (a PEM block is accepted too). It is public, stored in
  clear, and validated when it is set (422 naming ``public_key`` otherwise).
* **Verification.** ``X-Twilio-Email-Event-Webhook-Signature`` holds a base64 DER ECDSA
  signature (SHA-256) over the ``X-Twilio-Email-Event-Webhook-Timestamp`` value followed
  by the raw body. A post without these headers is a 401; a bad signature, or a timestamp
  further than :data:`TOLERANCE_SECONDS` from now (a replay), is a 403. The endpoint takes
  no token: the signature is the authentication. The body is not parsed before it is
  verified.
* **Idempotency.** Each event's ``sg_event_id`` is recorded with its effects in one
  transaction; a retried post changes nothing and still answers 200.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailgate import metrics
from mailgate.domain.delivery import RecipientStatus
from mailgate.domain.provider_events import read_events, sendgrid_change
from mailgate.errors import (
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
)
from mailgate.services import audit_trail
from mailgate.services.context import Caller, Context
from mailgate.storage import provider_events as store
from mailgate.storage import tenants
from mailgate.storage.base import Tx, utcnow

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: How far the signed timestamp may be from Mailgate's clock (replay protection).
TOLERANCE_SECONDS = 600
MAX_KEY_CHARS = 4000


def load_key(text: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in ``text`` (base64 DER SubjectPublicKeyInfo, or PEM); a 422
    naming ``public_key`` for anything else."""
    text = text.strip()
    if not text or len(text) > MAX_KEY_CHARS:
        raise ValidationFailed.field("public_key", "give SendGrid's verification key")
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error, NotImplementedError):
        raise ValidationFailed.field(
            "public_key", "is not a base64 DER (SubjectPublicKeyInfo) or PEM public key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValidationFailed.field("public_key", "must be an ECDSA P-256 (prime256v1) key")
    return key


def verify(
    key: ec.EllipticCurvePublicKey,
    *,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise Unauthenticated (unsigned) or PermissionDenied (bad or stale) unless ``body``
    carries SendGrid's valid signature."""
    if not signature or not timestamp:
        raise Unauthenticated(f"Unsigned post: {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} needed.")
    stamp = timestamp.strip()
    if not stamp.isdigit() or len(stamp) > 12:
        raise PermissionDenied(f"{TIMESTAMP_HEADER} is not a unix time.")
    if abs(now - int(stamp)) > tolerance:
        raise PermissionDenied(
            f"{TIMESTAMP_HEADER} is more than {tolerance} s from this server's clock."
        )
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        key.verify(der, stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise PermissionDenied("The event webhook signature does not verify.") from None


# The key of a server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    server_id: str
    public_key: str | None
    #: The path SendGrid posts to (prefix it with Mailgate's public base URL).
    path: str


def endpoint_path(slug: str, server_id: str) -> str:
    return f"/api/v1/tenants/{slug}/mail-servers/{server_id}/sendgrid-events"


async def get_key(ctx: Context, caller: Caller, server_id: str) -> KeyInfo:
    async with ctx.db.read() as tx:
        ref = await store.server(tx, server_id, tenant_id=caller.tenant_id)
        key = await store.get_key(tx, ref.id)
    return KeyInfo(
        ref.id, key.public_key if key else None, endpoint_path(caller.tenant.slug, ref.id)
    )


async def set_key(ctx: Context, caller: Caller, server_id: str, public_key: str) -> KeyInfo:
    """Store the verification key of a SendGrid server (replacing any previous one)."""
    load_key(public_key)
    text = public_key.strip()
    async with ctx.db.transaction() as tx:
        ref = await store.server(tx, server_id, tenant_id=caller.tenant_id)
        if ref.engine != "sendgrid":
            raise ValidationFailed.field(
                "engine",
                f"mail server {ref.name!r} uses {ref.engine!r}; event keys are for sendgrid",
            )
        await store.set_key(tx, ref, text, now=utcnow())
        await _audit(tx, caller, ref, "mail_server.event_key")
    return KeyInfo(ref.id, text, endpoint_path(caller.tenant.slug, ref.id))


async def delete_key(ctx: Context, caller: Caller, server_id: str) -> None:
    """Remove the key: posts to the endpoint are refused from then on."""
    async with ctx.db.transaction() as tx:
        ref = await store.server(tx, server_id, tenant_id=caller.tenant_id)
        if not await store.delete_key(tx, ref.id):
            raise NotFound(f"Mail server {ref.name!r} has no event webhook key.")
        await _audit(tx, caller, ref, "mail_server.event_key_delete")


async def _audit(tx: Tx, caller: Caller, ref: store.ServerRef, action: str) -> None:
    await audit_trail.record(
        tx, caller, action, "mail_server", ref.id, ref.name, ["event_webhook_key"]
    )


# Receiving -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    received: int
    applied: int
    duplicates: int
    unmatched: int
    ignored: int


async def receive(
    ctx: Context,
    *,
    slug: str,
    server_id: str,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now: float | None = None,
) -> Received:
    """Verify and apply one post of SendGrid events for the server ``server_id`` of the
    tenant ``slug``. 404 when there is no such server or it has no key."""
    async with ctx.db.read() as tx:
        tenant = await tenants.get_tenant(tx, slug)
        ref = await store.server(tx, server_id, tenant_id=tenant.id)
        key = await store.get_key(tx, ref.id)
    if key is None:
        raise NotFound(f"Mail server {server_id!r} has no event webhook key.")
    verify(
        load_key(key.public_key),
        signature=signature,
        timestamp=timestamp,
        body=body,
        now=time.time() if now is None else now,
    )
    try:
        events = read_events(json.loads(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed.field("body", str(exc)) from None
    applied = duplicates = unmatched = ignored = bounced = 0
    stamp = utcnow()
    async with ctx.db.transaction() as tx:
        for event in events:
            change = sendgrid_change(event)
            if not await store.first_time(tx, ref.id, event.event_id, now=stamp):
                duplicates += 1
                continue
            if change is None:
                ignored += 1
                continue
            done = await store.apply_event(tx, ref, event, change, now=stamp)
            if done is None:
                unmatched += 1
            elif done:
                applied += 1
                bounced += change.status is RecipientStatus.BOUNCED
            else:
                ignored += 1
    metrics.bounced(ref.tenant_id, ref.id, bounced)  # counted once committed
    return Received(
        received=len(events),
        applied=applied,
        duplicates=duplicates,
        unmatched=unmatched,
        ignored=ignored,
    )
