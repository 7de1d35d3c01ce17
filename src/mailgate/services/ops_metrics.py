"""The gauges of ``/metrics`` that come from the database (every process's work)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from mailgate.domain.servers import ServerStatus
from mailgate.domain.worker_health import HEARTBEAT_STALE_AFTER, FleetReport, assess_fleet
from mailgate.services.context import Context
from mailgate.storage import heartbeats
from mailgate.storage import ops_metrics as q
from mailgate.storage.base import Tx, utcnow


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(
    name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
    return lines


async def _fleet(ctx: Context, tx: Tx) -> FleetReport:
    now = utcnow()
    alive = await heartbeats.seen_since(tx, now - timedelta(seconds=HEARTBEAT_STALE_AFTER))
    oldest = await q.oldest_due(tx, now)
    return assess_fleet(
        alive=len(alive),
        claiming=sum(h.claiming for h in alive),
        expected=ctx.policy.expect_workers,
        oldest_due_age=(now - oldest).total_seconds() if oldest else None,
    )


async def fleet(ctx: Context) -> FleetReport:
    """The delivery worker processes of the deployment, from their heartbeats."""
    async with ctx.db.read() as tx:
        return await _fleet(ctx, tx)


async def gauge_lines(ctx: Context) -> list[str]:
    now = utcnow()
    async with ctx.db.read() as tx:
        depth = await q.queue_depth(tx)
        oldest = await q.oldest_due(tx, now)
        workers = await _fleet(ctx, tx)
        servers = await q.servers(tx)
        bounced = await q.bounced(tx)
        imap = await q.failing_imap(tx)
        hooks = await q.webhook_states(tx)
    lines = _family(
        "mailgate_queue_messages",
        "Messages waiting, by tenant, mail server and state (queued, deferred, sending, held).",
        (({"tenant": t, "server": s or "none", "state": state}, n) for t, s, state, n in depth),
    )
    lines += _family(
        "mailgate_queue_oldest_due_age_seconds",
        "Seconds the message that has waited longest past its due time has waited (0: none).",
        [({}, (now - oldest).total_seconds() if oldest else 0.0)],
    )
    lines += _family(
        "mailgate_worker_processes_alive",
        "Processes with delivery workers (any host) whose heartbeat is at most "
        f"{HEARTBEAT_STALE_AFTER:g} s old.",
        [({}, workers.alive)],
    )
    lines += _family(
        "mailgate_worker_processes_claiming_loops",
        "Claim loops of those processes that were claiming without error at their last heartbeat.",
        [({}, workers.claiming)],
    )
    lines += _family(
        "mailgate_server_info",
        "1 per mail server: its tenant's slug and its name, for joins on tenant and server.",
        [
            (
                {
                    "tenant": r.tenant_id,
                    "server": r.id,
                    "tenant_slug": r.slug,
                    "server_name": r.name,
                },
                1,
            )
            for r in servers
        ],
    )
    lines += _family(
        "mailgate_server_status",
        "1 for a mail server's last observed status (the connection test or a delivery): "
        "unknown, ok, auth_failed or unreachable.",
        [({"tenant": r.tenant_id, "server": r.id, "status": r.status}, 1) for r in servers],
    )
    lines += _family(
        "mailgate_server_on_hold",
        "1 while a mail server's mail is held because its credentials were refused.",
        (
            (
                {"tenant": r.tenant_id, "server": r.id},
                1 if r.status == ServerStatus.AUTH_FAILED.value else 0,
            )
            for r in servers
        ),
    )
    lines += _family(
        "mailgate_stored_messages_bounced",
        "Messages still stored (not yet purged by retention) with a bounced recipient, by "
        "tenant and mail server.",
        (({"tenant": t, "server": s or "none"}, n) for t, s, n in bounced),
    )
    lines += _family(
        "mailgate_imap_accounts_failing",
        "Email accounts whose last IMAP sync failed, by tenant.",
        (({"tenant": t}, n) for t, n in imap),
    )
    lines += _family(
        "mailgate_webhooks",
        "Webhook endpoints by tenant and state (active, failing, disabled).",
        (({"tenant": t, "state": s}, n) for t, s, n in hooks),
    )
    return lines
