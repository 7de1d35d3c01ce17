"""The network policy on the IMAP path (pinning, refusal) and the background scheduler."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from mailgate.inbound.errors import ImapSyncError, SyncErrorCode
from mailgate.inbound.sync import sync_account
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.storage.base import utcnow
from mailgate.storage.inbound import InboundStore
from mailgate.worker.imap_sync import ImapSyncScheduler, SchedulerOptions
from tests.conftest import ADMIN
from tests.inbound.bounces import plain_mail
from tests.inbound.conftest import Inbox, T


class Resolver:
    """DNS answers fixed by the test; records what was asked."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.answers[host]


async def _store(inbox: Inbox) -> InboundStore:
    r = await inbox.client.get(T, headers=ADMIN)
    return InboundStore(
        inbox.ctx.db, inbox.ctx.box, tenant_id=r.json()["id"], account_id=inbox.account_id
    )


def _dialer(resolver: Resolver) -> GuardedDialer:
    return GuardedDialer(NetworkPolicy(["127.0.0.1/32"]), resolver=resolver)


async def test_connection_goes_to_the_checked_address_and_tls_checks_the_name(
    inbox: Inbox,
) -> None:
    await inbox.set_imap(host="imap.mailgate.test")
    inbox.server.deliver("alice", plain_mail("Pinned", message_id="<p@example.com>"))
    resolver = Resolver({"imap.mailgate.test": ["127.0.0.1"]})

    counts = await sync_account(await _store(inbox), dialer=_dialer(resolver))

    assert counts.stored == 1
    assert resolver.asked == ["imap.mailgate.test"]  # resolved once, then pinned


async def test_a_certificate_for_another_name_is_refused(inbox: Inbox) -> None:
    await inbox.set_imap(host="wrong.mailgate.test")
    resolver = Resolver({"wrong.mailgate.test": ["127.0.0.1"]})
    with pytest.raises(ImapSyncError) as caught:
        await sync_account(await _store(inbox), dialer=_dialer(resolver))
    assert caught.value.code is SyncErrorCode.CERTIFICATE_HOSTNAME_MISMATCH
    assert caught.value.field == "imap.host"


@pytest.mark.parametrize(
    "answer",
    [["169.254.169.254"], ["127.0.0.1", "10.1.2.3"]],
    ids=["metadata-address", "one-refused-address"],
)
async def test_every_resolved_address_is_checked_before_connecting(
    inbox: Inbox, answer: list[str]
) -> None:
    await inbox.set_imap(host="rebound.mailgate.test")
    resolver = Resolver({"rebound.mailgate.test": answer})
    before = inbox.server.log_text().count("imap-login")
    with pytest.raises(ImapSyncError) as caught:
        await sync_account(await _store(inbox), dialer=_dialer(resolver))
    assert caught.value.code is SyncErrorCode.POLICY_REFUSED
    assert inbox.server.log_text().count("imap-login") == before


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


async def test_scheduler_syncs_each_due_account_once_across_workers(inbox: Inbox) -> None:
    for n in (1, 2):
        inbox.server.deliver("alice", plain_mail(f"S{n}", message_id=f"<s{n}@example.com>"))
    clock = Clock()
    options = SchedulerOptions(interval=60)
    first = ImapSyncScheduler(inbox.ctx, options=options, clock=clock)
    second = ImapSyncScheduler(inbox.ctx, options=options, clock=clock)

    done = await asyncio.gather(first.run_once(), second.run_once())

    assert sum(done) == 1
    assert len(await inbox.items()) == 2
    assert await first.run_once() == 0  # not due again before the interval

    inbox.server.deliver("alice", plain_mail("S3", message_id="<s3@example.com>"))
    clock.now += timedelta(seconds=61)
    assert await first.run_once() == 1
    assert len(await inbox.items()) == 3

    # The account's own interval (minutes) overrides the instance's.
    r = await inbox.client.get(inbox.url, headers=ADMIN)
    imap = {k: v for k, v in r.json()["imap"].items() if k != "password_set"}
    r = await inbox.client.patch(
        inbox.url, json={"imap": {**imap, "sync_interval_minutes": 10}}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    clock.now += timedelta(minutes=5)
    assert await first.run_once() == 0
    clock.now += timedelta(minutes=6)
    assert await first.run_once() == 1


async def test_scheduler_records_failures_and_keeps_running(inbox: Inbox) -> None:
    await inbox.set_imap(password="not-the-password")
    scheduler = ImapSyncScheduler(inbox.ctx, options=SchedulerOptions(interval=0.2, poll=0.05))
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        for _ in range(200):
            if await inbox.last_sync_error():
                break
            await asyncio.sleep(0.05)
        assert (await inbox.last_sync_error() or "").startswith("auth_failed")
        await inbox.set_imap()
        inbox.server.deliver("alice", plain_mail("Later", message_id="<later@example.com>"))
        for _ in range(200):
            if await inbox.items():
                break
            await asyncio.sleep(0.05)
        assert [i["subject"] for i in await inbox.items()] == ["Later"]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert task.done() and task.exception() is None
