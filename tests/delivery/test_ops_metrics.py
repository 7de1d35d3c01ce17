"""/metrics series an operator alerts on, and the Grafana dashboard that queries them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy import update

from mailgate.storage.tables import email_accounts, mail_servers, message_recipients, messages
from mailgate.worker.webhooks import Dispatcher
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain
from tests.delivery.test_webhooks import Receiver, _hook, receiver

__all__ = ["receiver"]  # the fixture, shared with the webhook tests

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "mailgate.json"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample line."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if found:
            out[found.group(1) + (found.group(2) or "")] = float(found.group(3))
    return out


def _value(samples: dict[str, float], name: str, **labels: str) -> float | None:
    for key, value in samples.items():
        if not key.startswith(name + "{") and key != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            return value
    return None


async def _tenant_and_server(tenant: Tenant) -> tuple[str, str]:
    servers = (await tenant.client.get(f"{T}/mail-servers", headers=ADMIN)).json()["items"]
    async with tenant.ctx.db.read() as tx:
        row = (
            await tx.execute(mail_servers.select().where(mail_servers.c.id == servers[0]["id"]))
        ).first()
    assert row is not None
    return row.tenant_id, row.id


async def test_accepted_sent_latency_and_attempt_duration_by_tenant_and_server(
    tenant: Tenant,
) -> None:
    tenant_id, server = await _tenant_and_server(tenant)
    first = await tenant.send_ok()
    await tenant.send_ok()
    before = _samples((await tenant.client.get("/metrics")).text)
    assert _value(before, "mailgate_messages_accepted_total", tenant=tenant_id, server=server) == 2
    assert (
        _value(before, "mailgate_queue_messages", tenant=tenant_id, server=server, state="queued")
        == 2
    )
    assert _value(before, "mailgate_queue_oldest_due_age_seconds") is not None
    await drain(tenant.ctx)
    after = _samples((await tenant.client.get("/metrics")).text)
    labels = {"tenant": tenant_id, "server": server}
    assert _value(after, "mailgate_delivery_outcomes_total", outcome="sent", **labels) == 2
    assert _value(after, "mailgate_delivery_latency_seconds_count", **labels) == 2
    assert _value(after, "mailgate_delivery_latency_seconds_bucket", le="+Inf", **labels) == 2
    assert (
        _value(after, "mailgate_attempt_duration_seconds_count", engine="capture", outcome="sent")
        or 0
    ) >= 2
    assert _value(after, "mailgate_queue_messages", state="queued", **labels) is None
    assert _value(after, "mailgate_server_info", server_name="Capture", **labels) == 1
    # A recipient reported bounced later is counted by tenant and server.
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(message_recipients)
            .where(message_recipients.c.message_id == first)
            .values(status="bounced")
        )
    bounced = _samples((await tenant.client.get("/metrics")).text)
    assert _value(bounced, "mailgate_stored_messages_bounced", **labels) == 1
    # The existing series stay.
    for name in ("mailgate_messages", "mailgate_worker_loops", "mailgate_info"):
        assert _value(after, name) is not None, name


async def test_hold_state_queue_age_and_imap_failures(tenant: Tenant) -> None:
    tenant_id, server = await _tenant_and_server(tenant)
    message = await tenant.send_ok()
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(mail_servers)
            .where(mail_servers.c.id == server)
            .values(status="auth_failed", status_detail="535")
        )
        await tx.execute(update(messages).where(messages.c.id == message).values(held=True))
        await tx.execute(update(email_accounts).values(last_sync_error="login refused"))
    samples = _samples((await tenant.client.get("/metrics")).text)
    labels = {"tenant": tenant_id, "server": server}
    assert _value(samples, "mailgate_server_on_hold", **labels) == 1
    assert _value(samples, "mailgate_server_status", status="auth_failed", **labels) == 1
    assert _value(samples, "mailgate_queue_messages", state="held", **labels) == 1
    assert _value(samples, "mailgate_imap_accounts_failing", tenant=tenant_id) == 1
    assert (_value(samples, "mailgate_queue_oldest_due_age_seconds") or 0) >= 0


async def test_a_failed_webhook_post_and_a_connection_test_are_counted(
    tenant: Tenant, receiver: Receiver
) -> None:
    _, server = await _tenant_and_server(tenant)
    before = _samples((await tenant.client.get("/metrics")).text)
    failures = _value(before, "mailgate_webhook_failures_total") or 0
    receiver.statuses = [500]
    async with receiver.running():
        await _hook(tenant.client, receiver.url)
        await tenant.send_ok()
        await drain(tenant.ctx)
        async with Dispatcher(tenant.ctx) as dispatcher:
            assert await dispatcher.run_once() == 1
    r = await tenant.client.post(f"{T}/mail-servers/{server}/test", headers=ADMIN)
    assert r.status_code == 200, r.text
    result = "ok" if r.json()["ok"] else r.json()["error"]["code"]
    probes = _value(before, "mailgate_probes_total", result=result) or 0
    after = _samples((await tenant.client.get("/metrics")).text)
    assert _value(after, "mailgate_webhook_failures_total") == failures + 1
    assert _value(after, "mailgate_probes_total", result=result) == probes + 1
    assert _value(after, "mailgate_webhooks", state="failing") == 1


def _queried(node: object) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query") and isinstance(value, str):
                names |= set(re.findall(r"\bmailgate_[a-z0-9_]+", value))
            else:
                names |= _queried(value)
    elif isinstance(node, list):
        for item in node:
            names |= _queried(item)
    return names


async def test_every_metric_the_grafana_dashboard_queries_is_in_metrics(tenant: Tenant) -> None:
    await tenant.send_ok()
    await drain(tenant.ctx)
    text = (await tenant.client.get("/metrics")).text
    exposed = {key.split("{", 1)[0] for key in _samples(text)}
    exposed |= set(re.findall(r"^# TYPE (\S+)", text, flags=re.MULTILINE))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = _queried(dashboard)
    assert len(queried) >= 10, queried
    missing = {
        name
        for name in queried
        if name not in exposed and re.sub(r"_(bucket|sum|count|total)$", "", name) not in exposed
    }
    assert missing == set()
    assert dashboard["panels"] and dashboard["title"]


def test_observe_many_counts_as_observe_does() -> None:
    """Values observed at once land in the same buckets, count and sum as one by one,
    including values on a bucket's bound, past the last finite bound and zero."""
    from prometheus_client import CollectorRegistry, Histogram

    from mailgate.metrics import DURATION_BUCKETS, observe_many

    values = [0.0, 0.05, 0.051, 0.3, 0.3, 2.5, 7.0, 59.9, 60.0, 500.0, 0.001]
    registry = CollectorRegistry()
    one = Histogram("one", "by observe", ["k"], buckets=DURATION_BUCKETS, registry=registry)
    many = Histogram("many", "by observe_many", ["k"], buckets=DURATION_BUCKETS, registry=registry)
    for value in values:
        one.labels(k="x").observe(value)
    observe_many(many.labels(k="x"), values)
    observe_many(many.labels(k="x"), [])  # nothing to count

    def samples(name: str) -> dict[tuple[str, str], float]:
        return {
            (s.name.removeprefix(name), s.labels.get("le", "")): s.value
            for metric in registry.collect()
            if metric.name == name
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    expected = samples("one")
    assert expected[("_count", "")] == len(values)
    assert expected[("_bucket", "0.05")] == 3  # 0.0, 0.001 and 0.05 itself
    assert samples("many") == expected
