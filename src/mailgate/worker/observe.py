"""Counting finished delivery attempts in :mod:`mailgate.metrics` (one call per flush)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from mailgate import metrics
from mailgate.storage.queue_types import Completion


def record(done: Iterable[Completion]) -> None:
    """Count each completion once, grouped by labels (a label lookup per group, not per
    message)."""
    outcomes: Counter[tuple[str, str | None, str]] = Counter()
    latencies: defaultdict[tuple[str, str | None], list[float]] = defaultdict(list)
    durations: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for completion in done:
        job, attempt = completion.job, completion.attempt
        server_id = (attempt.server_id if attempt else None) or job.server_id
        outcome = completion.status.value
        outcomes[job.tenant_id, server_id, outcome] += 1
        if attempt is None:
            continue
        if outcome == "sent":
            seconds = (attempt.finished_at - job.created_at).total_seconds()
            latencies[job.tenant_id, server_id].append(max(0.0, seconds))
        durations[attempt.engine, outcome].append(attempt.duration_ms / 1000)
    metrics.attempts(outcomes, latencies, durations)
