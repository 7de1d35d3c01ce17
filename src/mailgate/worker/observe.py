"""Counting finished delivery attempts in :mod:`mailgate.metrics` (one call per flush)."""

from __future__ import annotations

from collections.abc import Iterable

from mailgate import metrics
from mailgate.storage.queue_types import Completion


def record(done: Iterable[Completion]) -> None:
    for completion in done:
        job, attempt = completion.job, completion.attempt
        metrics.attempt(
            tenant_id=job.tenant_id,
            server_id=(attempt.server_id if attempt else None) or job.server_id,
            outcome=completion.status.value,
            created_at=job.created_at,
            finished_at=attempt.finished_at if attempt else None,
            engine=attempt.engine if attempt else None,
            duration_seconds=attempt.duration_ms / 1000 if attempt else None,
        )
