"""Erasing a recipient's personal data on request (``DELETE …/recipients/{address}``)."""

from __future__ import annotations

import hashlib

from mailgate.errors import ValidationFailed
from mailgate.services import audit_trail
from mailgate.services.context import Caller, Context
from mailgate.storage.base import utcnow
from mailgate.storage.erase import Erased, erase_recipient


def address_fingerprint(address: str) -> str:
    """What the audit log keeps of an erased address: enough to show that a request for an
    address someone names was carried out, without keeping the address."""
    return "sha256:" + hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]


async def erase(ctx: Context, caller: Caller, address: str) -> Erased:
    """Erase ``address`` from the caller's tenant (see :mod:`mailgate.storage.erase`)."""
    # Lenient on purpose: whatever was stored for the person must be erasable, including
    # addresses Mailgate would refuse today; only what cannot be an address is refused.
    email = address.strip().lower()
    if not 3 <= len(email) <= 320 or "@" not in email or not email.isprintable():
        raise ValidationFailed.field(
            "address", "an email address (local@domain), at most 320 characters"
        )
    async with ctx.db.transaction() as tx:
        erased = await erase_recipient(tx, caller.tenant_id, email, now=utcnow())
        await audit_trail.record(
            tx,
            caller,
            "recipient.erase",
            "recipient",
            None,
            address_fingerprint(email),
            [
                f"messages:{erased.messages}",
                f"bodies_removed:{erased.bodies_removed}",
                f"deliveries_stopped:{erased.deliveries_stopped}",
                f"inbound_removed:{erased.inbound_removed}",
            ],
        )
    return erased
