"""The 1,000,000-queued memory check of ``bench/delivery.py --million-queued``.

The queue is filled straight through the storage layer (``queue.enqueue``, the statements
the API commits, in transactions of :data:`CHUNK` messages; no HTTP), then ``mailgate worker``
starts on it and its resident set size is sampled while it drains, for a bounded time. A
worker that loaded the whole due set, or kept what it sent, would grow with the queue; the
figure is its RSS over the sampling window, which must stay flat and under the target.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from _support import BenchDatabase, BenchError, Deadline, MailgateProcess

from mailgate.compose import Address, compose, new_message_id
from mailgate.compose.message import Draft
from mailgate.domain.ids import new_id
from mailgate.storage import queue
from mailgate.storage.db import Database

#: Messages per fill transaction.
CHUNK = 5_000
#: Seconds between RSS samples.
SAMPLE_SECONDS = 0.5


@dataclass
class MemoryCheck:
    """What the check measured; ``as_json`` is its ``--json`` record."""

    queued: int
    fill_seconds: float = 0.0
    seconds: float = 0.0
    sent: int = 0
    #: (seconds since the worker started, largest VmRSS among its processes in KiB, sent).
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def rss_kb(self) -> list[int]:
        return [rss for _, rss, _ in self.samples]

    def as_json(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "fill_seconds": round(self.fill_seconds, 2),
            "seconds": round(self.seconds, 2),
            "sent": self.sent,
            "rss_kb_samples": self.samples,
        }


def database_url(db: BenchDatabase) -> str:
    if db.url is not None:
        return db.url
    return f"sqlite+aiosqlite:///{(db.data_dir / 'mailgate.db').as_posix()}"


async def _fill(url: str, route: tuple[Any, ...], count: int, deadline: Deadline) -> None:
    tenant_id, account_id, server_id, address = route
    domain = address.rpartition("@")[2]
    database = Database(url)
    try:
        for start in range(0, count, CHUNK):
            deadline.check("filling the queue")
            now = datetime.now(UTC)
            items = []
            for i in range(start, min(start + CHUNK, count)):
                rcpt = f"queued{i}@example.net"
                message_id = new_message_id(domain)
                draft = Draft(
                    from_=Address(address),
                    to=(Address(rcpt),),
                    subject=f"Queued {i}",
                    text="One of a million queued messages.\n",
                )
                items.append(
                    queue.NewMessage(
                        id=new_id(),
                        tenant_id=tenant_id,
                        app_id=None,
                        stage=None,
                        account_id=account_id,
                        server_id=server_id,
                        message_id=message_id,
                        mail_from=address,
                        from_header=address,
                        subject=draft.subject,
                        recipients=(rcpt,),
                        redirected=False,
                        original_recipients=None,
                        smtputf8=False,
                        raw=compose(draft, message_id=message_id, date=now),
                        meta=None,
                        send_at=None,
                    )
                )
            async with database.transaction() as tx:
                await queue.enqueue(tx, items, now=now)
    finally:
        await database.dispose()


def fill(db: BenchDatabase, count: int, deadline: Deadline) -> float:
    """Queue ``count`` messages from the default account; returns the seconds it took."""
    rows = db.query(
        "SELECT a.tenant_id, a.id, a.mail_server_id, a.address FROM email_accounts a"
        " WHERE a.is_default"
    )
    if not rows:
        raise BenchError("million-queued: no default email account to send from")
    started = time.monotonic()
    asyncio.run(_fill(database_url(db), rows[0], count, deadline))
    return time.monotonic() - started


def sample(
    db: BenchDatabase,
    worker: MailgateProcess,
    seconds: float,
    deadline: Deadline,
    check: MemoryCheck,
    *,
    sent_before: int,
    say: Callable[[str], None],
) -> None:
    """Sample the worker's RSS every :data:`SAMPLE_SECONDS` for ``seconds``."""
    started = time.monotonic()
    # MailgateProcess keeps the wall-clock start; samples count from it on the monotonic clock.
    worker_start = started - (time.time() - worker.started)
    next_count = started
    sent = 0
    while True:
        worker.ensure_alive()
        now = time.monotonic()
        if now >= next_count:  # counting a million rows is not free: once a second
            sent = int(db.query("SELECT count(*) FROM messages WHERE status = 'sent'")[0][0])
            sent -= sent_before
            next_count = now + 1.0
        check.samples.append((round(now - worker_start, 2), worker.rss_kb(), sent))
        if now - started >= seconds or sent >= check.queued or deadline.left() <= 0:
            break
        time.sleep(SAMPLE_SECONDS)
    check.seconds = time.monotonic() - started
    check.sent = sent
    states = db.query("SELECT status, count(*) FROM messages GROUP BY status")
    say(f"million-queued: {sent:,} sent in {check.seconds:.0f} s; {dict(states)}")


def summary(check: MemoryCheck, target_mib: float) -> str:
    rss = check.rss_kb
    if not rss:
        return "no samples"
    # Start-up (imports, pools) comes before the first delivery; "flat" compares the rest.
    settled = [r for _, r, sent in check.samples if sent > 0]
    where = "at the first delivery" if settled else "at the first sample (nothing sent yet)"
    first, peak, last = (settled or rss)[0] / 1024, max(rss) / 1024, rss[-1] / 1024
    ok = "met" if peak < target_mib else "NOT met"
    return (
        f"{check.queued:,} queued (filled in {check.fill_seconds:.0f} s); worker sent "
        f"{check.sent:,} in {check.seconds:.0f} s; RSS {where} {first:,.0f} MiB, "
        f"peak {peak:,.0f} MiB, last {last:,.0f} MiB (growth {last - first:+,.0f} MiB) "
        f"[target < {target_mib:.0f} MiB: {ok}]"
    )
