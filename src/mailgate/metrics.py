"""Counters and histograms of what happens in a process (Prometheus, ``prometheus_client``).

Every process counts what it does itself: the web and submission processes the messages they
accept and the connection tests they run, delivery workers the outcome and duration of each
attempt, the webhook dispatcher and the IMAP sync their failures, the IMAP sync and the
SendGrid event receiver the recipients they mark bounced. ``GET /metrics`` shows the
counters of the process that serves it. With ``PROMETHEUS_MULTIPROC_DIR`` set (to one empty
directory, the same for every Mailgate process of the host, before they start) the counts of
all of them are written there and ``/metrics`` adds them up, so ``mailgate worker
--processes N`` children are included. Labels are ids (``tenant``, ``server``); the gauge
``mailgate_server_info`` maps them to names.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

#: Seconds from acceptance to delivery: a minute to a day.
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
#: Seconds one attempt took.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

ACCEPTED = Counter(
    "mailgate_messages_accepted",
    "Messages accepted into the queue, by tenant and mail server.",
    ["tenant", "server"],
)
OUTCOMES = Counter(
    "mailgate_delivery_outcomes",
    "Delivery attempts by the message status they left (sent, deferred, failed), by tenant "
    "and mail server.",
    ["tenant", "server", "outcome"],
)
LATENCY = Histogram(
    "mailgate_delivery_latency_seconds",
    "Seconds from acceptance until a message was sent.",
    ["tenant", "server"],
    buckets=LATENCY_BUCKETS,
)
ATTEMPT_DURATION = Histogram(
    "mailgate_attempt_duration_seconds",
    "Seconds one delivery attempt took, by engine and outcome.",
    ["engine", "outcome"],
    buckets=DURATION_BUCKETS,
)
BOUNCED = Counter(
    "mailgate_messages_bounced",
    "Recipients of sent messages marked bounced (a bounce found in an inbox, a SendGrid "
    "bounce event), each once, by tenant and the mail server that sent the message.",
    ["tenant", "server"],
)
WEBHOOK_FAILURES = Counter(
    "mailgate_webhook_failures", "Webhook deliveries that failed (an attempt).", []
)
IMAP_SYNC_FAILURES = Counter(
    "mailgate_imap_sync_failures", "IMAP inbox syncs that failed, by tenant.", ["tenant"]
)
PROBES = Counter(
    "mailgate_probes",
    "Connection tests (Test Connection, mailgate server test) by result (ok or error code).",
    ["result"],
)


def accepted(tenant_id: str, server_id: str | None, count: int = 1) -> None:
    ACCEPTED.labels(tenant=tenant_id, server=server_id or "none").inc(count)


def attempts(
    outcomes: Mapping[tuple[str, str | None, str], int],
    latencies: Mapping[tuple[str, str | None], Sequence[float]],
    durations: Mapping[tuple[str, str], Sequence[float]],
) -> None:
    """Finished attempts, grouped by their labels: counts by (tenant, server, outcome, the
    status the message is left in); seconds from acceptance to delivery of the sent ones by
    (tenant, server); seconds each attempt took by (engine, outcome)."""
    for (tenant_id, server_id, outcome), count in outcomes.items():
        OUTCOMES.labels(tenant=tenant_id, server=server_id or "none", outcome=outcome).inc(count)
    for (tenant_id, server_id), values in latencies.items():
        observe_many(LATENCY.labels(tenant=tenant_id, server=server_id or "none"), values)
    for (engine, outcome), values in durations.items():
        observe_many(ATTEMPT_DURATION.labels(engine=engine, outcome=outcome), values)


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, with one increment per bucket touched and
    one of the sum (``observe`` takes a bucket search and two locked increments per value;
    a worker observes two values per delivered message). A histogram without the fields
    this relies on is given one value at a time."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(values) < 2:
        for value in values:
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose upper bound is not below it; the
    # last bound is +Inf, so every value has one.
    for index, count in Tally(bisect_left(bounds, value) for value in values).items():
        buckets[index].inc(count)
    total.inc(sum(values))


def bounced(tenant_id: str, server_id: str | None, count: int = 1) -> None:
    """``count`` recipients of a message sent through ``server_id`` were marked bounced."""
    if count:
        BOUNCED.labels(tenant=tenant_id, server=server_id or "none").inc(count)


def webhook_failed() -> None:
    WEBHOOK_FAILURES.inc()


def imap_sync_failed(tenant_id: str) -> None:
    IMAP_SYNC_FAILURES.labels(tenant=tenant_id).inc()


def probed(result: str) -> None:
    PROBES.labels(result=result).inc()


def exposition() -> str:
    """This process's series, or every process's with ``PROMETHEUS_MULTIPROC_DIR``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry).decode()
    return generate_latest(REGISTRY).decode()
