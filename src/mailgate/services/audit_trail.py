"""One audit entry for a change a caller made inside its tenant: the shape every use-case writes."""

from __future__ import annotations

from collections.abc import Iterable

from mailgate.services.context import Caller
from mailgate.storage import audit
from mailgate.storage.base import Tx


async def record(
    tx: Tx,
    caller: Caller,
    action: str,
    object_type: str,
    object_id: str | None,
    object_name: str | None,
    changes: Iterable[str] = (),
) -> None:
    """Append an entry in the caller's tenant, by the caller; ``changes`` are field *names*."""
    await audit.record(
        tx,
        tenant_id=caller.tenant_id,
        actor=caller.actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_name=object_name,
        changes=changes,
    )
