"""The outcome journal: lines, files and locks, recovery of a gone worker's journal, and the
bulk apply of journalled outcomes on SQLite (where workers keep journals)."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from mailgate.runtime import Context
from mailgate.storage.outcome_journal import (
    OutcomeJournal,
    claim_dead,
    decode,
    encode,
    journal_dir,
    merge,
)
from mailgate.storage.queue import PreparedFinish, queue_for
from mailgate.storage.tables import messages, webhooks
from tests.storage.test_queue import LEASE, _queued, _sent, _status, _written

ROWS = PreparedFinish(
    [("a1", "m1", 1, "2026-12-06 04:00:00.000001", "t", None, "smtp", "w", "sent", 250,
      "ok", None, 1.5, 0, "C: MAIL FROM:<a@example.com>\nS: 250 ok")],
    [("sent", None, 0, None, "q1", "t", None, None, "t", "m1", "w")],
    [("sent", 250, "ok", "t", "m1", 0)],
    [],
)  # fmt: skip


def test_a_line_reads_back_as_written_and_a_torn_line_is_skipped() -> None:
    line = encode(ROWS)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode([line]) == ROWS
    other = PreparedFinish(
        [], [("failed", None, 0, "no", None, "t", None, None, "t", "m2", "w")], [], []
    )
    assert decode([line, encode(other), line[: len(line) // 2]]) == merge([ROWS, other])
    assert decode([b"", b"{not json"]) == PreparedFinish([], [], [], [])


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def test_a_live_journal_is_left_alone_and_a_gone_ones_is_claimed(tmp_path: Path) -> None:
    directory = journal_dir(str(tmp_path / "mailgate.db"))
    assert directory == tmp_path / "mailgate.db.outcomes"
    journal = OutcomeJournal(directory, "host:12:ab/c")
    journal.open()
    assert directory.stat().st_mode & 0o777 == 0o700
    journal.append(ROWS)
    first = journal.rotate()
    journal.append(ROWS)
    assert _files(directory) == {
        "host_12_ab_c.lock",
        "host_12_ab_c.1.jsonl",
        "host_12_ab_c.2.jsonl",
    }
    assert first.stat().st_mode & 0o777 == 0o600
    assert claim_dead(directory) == []  # its worker holds the lock
    journal.discard(first)
    journal.close(applied=False)  # the worker is gone: its files stay
    (dead,) = claim_dead(directory)
    assert dead.worker == "host:12:ab/c"
    assert dead.rows == ROWS  # the discarded generation is not replayed
    assert claim_dead(directory) == []  # claimed: locked by the caller
    dead.done()
    assert _files(directory) == set()
    assert claim_dead(directory) == []


def test_a_lock_file_not_yet_signed_is_not_claimed(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    (directory / "w.lock").touch()
    (directory / "w.1.jsonl").write_bytes(encode(ROWS))
    assert claim_dead(directory) == []
    assert _files(directory) == {"w.lock", "w.1.jsonl"}


def test_a_journal_closed_with_everything_applied_leaves_nothing(tmp_path: Path) -> None:
    journal = OutcomeJournal(tmp_path, "w1")
    journal.open()
    journal.append(ROWS)
    journal.discard(journal.rotate())
    journal.close(applied=True)
    assert _files(tmp_path) == set()
    with pytest.raises(OSError, match="not open"):
        journal.append(ROWS)


def test_the_lock_is_held_while_the_journal_is_open(tmp_path: Path) -> None:
    journal = OutcomeJournal(tmp_path, "w1")
    journal.open()
    fd = os.open(tmp_path / "w1.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        journal.close(applied=False)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


async def test_journalled_outcomes_are_applied_to_messages_still_leased(ctx: Context) -> None:
    if ctx.db.dialect != "sqlite":
        pytest.skip("outcome journals are kept with a SQLite database")
    q, items = await _queued(ctx, 3, recipients=2)
    assert q.journal_dir(ctx.db) == journal_dir(str(ctx.db.sqlite_path))
    jobs = await q.load_batch(
        ctx.db, await q.claim_batch(ctx.db, worker="w1", limit=3, lease=LEASE)
    )
    prepared = decode([encode(q.prepare_finish([_sent(job)], worker="w1")) for job in jobs])
    # Another worker holds the third message now (w1's lease ran out and it was reclaimed).
    async with ctx.db.transaction() as tx:
        await tx.execute(
            update(messages).where(messages.c.id == items[2].id).values(lease_owner="w2")
        )
    applied, hooked = await q.apply_journalled(ctx.db, prepared, worker="w1", tenant_ids=[])
    assert (applied, hooked) == (2, frozenset())
    for item in items[:2]:
        assert await _status(ctx, item.id) == ("sent", None)
        assert await _written(ctx, item.id) == (["ok"], ["sent", "sent"])
    assert await _status(ctx, items[2].id) == ("sending", "w2")
    assert await _written(ctx, items[2].id) == ([], ["pending", "pending"])
    # Applied twice (a journal replayed after its worker committed it): nothing more.
    assert await q.apply_journalled(ctx.db, prepared, worker="w1", tenant_ids=[]) == (0, hooked)
    assert await _written(ctx, items[0].id) == (["ok"], ["sent", "sent"])


async def test_journalled_outcomes_wait_for_a_tenant_with_a_webhook(ctx: Context) -> None:
    if ctx.db.dialect != "sqlite":
        pytest.skip("outcome journals are kept with a SQLite database")
    q, items = await _queued(ctx, 1)
    tenant_id = items[0].tenant_id
    (job,) = await q.load_batch(
        ctx.db, await q.claim_batch(ctx.db, worker="w1", limit=1, lease=LEASE)
    )
    assert await q.hooked_tenants(ctx.db) == frozenset()
    now = datetime.now(UTC)
    async with ctx.db.transaction() as tx:
        await tx.execute(
            insert(webhooks).values(
                id="h" * 26, tenant_id=tenant_id, url="https://hooks.example.com/", events=[],
                status="active", secrets=b"sealed", created_at=now, updated_at=now,
            )
        )  # fmt: skip
    prepared = q.prepare_finish([_sent(job)], worker="w1")
    assert await q.hooked_tenants(ctx.db) == frozenset({tenant_id})
    result = await q.apply_journalled(ctx.db, prepared, worker="w1", tenant_ids=[tenant_id])
    assert result == (None, frozenset({tenant_id}))
    assert await _status(ctx, items[0].id) == ("sending", "w1")


def test_other_databases_keep_no_journal() -> None:
    assert queue_for("postgresql").journal_dir(None) is None  # type: ignore[arg-type]
