"""The outcome journal: a busy worker's decided outcomes, durable before they are applied.

Used with a SQLite database (a file on this host). When deliveries wait for outcomes to be
durable before they may hand over more content (at most one delivered, unrecorded message
per connection: :meth:`mailgate.engines.smtp.pool.SessionPool.hold`), committing them to the
database costs a write transaction per handful of messages, each rewriting every message row
and waiting for the one writer lock, which the API also holds while it commits a batch of
accepted mail. The worker appends them to a file of its own instead (one ``write(2)``), lets
the connections send on, and applies them to the database in bulk shortly after.

A file written is durable across the death of the process (the kernel holds it), as a SQLite
commit is with ``synchronous=NORMAL`` in WAL mode, which Mailgate uses: both survive the
process being killed, and both may lose their last moments to a power cut.

Layout: the directory ``<database file>.outcomes`` beside the database, private (0700). Per
worker a lock file ``<stem>.lock`` (held with ``flock`` while the worker lives, and naming
it) and generations ``<stem>.<n>.jsonl``, one line per appended batch: the rows
:func:`mailgate.storage.queue_sql.finish_statements` writes, as JSON. A generation is deleted
once applied and committed.

Recovery: a journal whose lock can be taken belongs to a worker that is gone. Every worker
on the host replays such journals when it starts and before each reclaim of expired leases
(:func:`replay_dead`): the rows are applied to the messages that worker still leases (any
other was moved on meanwhile) and the files are deleted. A torn last line (a write cut short
by a power cut) is skipped: its messages come back as possible duplicates, as they would
without the journal.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailgate.storage.files import PRIVATE_FILE_MODE, ensure_private_dir
from mailgate.storage.queue_types import PreparedFinish

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def journal_dir(database_path: str) -> Path:
    """Where the journals of the workers of the SQLite database at ``database_path`` are."""
    return Path(database_path + ".outcomes")


def encode(prepared: PreparedFinish) -> bytes:
    """One journal line: the four row lists of ``prepared`` (text, numbers and nulls)."""
    lists = (prepared.attempts, prepared.messages, prepared.recipients, prepared.messages_moved)
    return json.dumps(lists, separators=(",", ":")).encode() + b"\n"


def decode(lines: Iterable[bytes]) -> PreparedFinish:
    """The rows of journal lines as one batch; a line that cannot be read (a torn last
    line) is skipped."""
    lists: tuple[list[tuple[Any, ...]], ...] = ([], [], [], [])
    for line in lines:
        try:
            parts = json.loads(line)
        except ValueError:
            continue
        for into, rows in zip(lists, parts, strict=True):
            into += map(tuple, rows)
    return PreparedFinish(*lists)


def merge(batches: Sequence[PreparedFinish]) -> PreparedFinish:
    """Several prepared batches as one."""
    return PreparedFinish(
        [row for b in batches for row in b.attempts],
        [row for b in batches for row in b.messages],
        [row for b in batches for row in b.recipients],
        [row for b in batches for row in b.messages_moved],
    )


def message_ids(prepared: PreparedFinish) -> list[str]:
    """The messages ``prepared`` writes (a message row ends with its id and the worker)."""
    return [row[-2] for row in (*prepared.messages, *prepared.messages_moved)]


def only(prepared: PreparedFinish, ids: set[str]) -> PreparedFinish:
    """The rows of ``prepared`` that belong to the messages ``ids``."""
    return PreparedFinish(
        [row for row in prepared.attempts if row[1] in ids],
        [row for row in prepared.messages if row[-2] in ids],
        [row for row in prepared.recipients if row[-2] in ids],
        [row for row in prepared.messages_moved if row[-2] in ids],
    )


class OutcomeJournal:
    """The journal of one worker; see the module docstring."""

    def __init__(self, directory: Path, worker: str) -> None:
        self.directory = directory
        self.worker = worker
        self._stem = _UNSAFE.sub("_", worker)
        self._lock: int | None = None
        self._fd: int | None = None
        self._generation = 0
        self._path: Path | None = None

    def open(self) -> None:
        """Create the lock file (holding it) and the first generation."""
        ensure_private_dir(self.directory)
        lock = os.open(
            self.directory / f"{self._stem}.lock",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            PRIVATE_FILE_MODE,
        )
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(lock, 0)
            os.write(lock, self.worker.encode())
        except OSError:
            os.close(lock)
            raise
        self._lock = lock
        self._start()

    def append(self, prepared: PreparedFinish) -> None:
        """Write one batch to the current generation (raises OSError when it cannot)."""
        if self._fd is None:
            raise OSError("the outcome journal is not open")
        data = encode(prepared)
        written = os.write(self._fd, data)
        while written < len(data):  # a regular file writes all of it, short of an error
            written += os.write(self._fd, data[written:])

    def rotate(self) -> Path:
        """Close the current generation (the batches appended so far) and start the next;
        the closed one's path, for :meth:`discard` once its batches are committed."""
        closed = self._path
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._start()
        if closed is None:  # pragma: no cover - only before open()
            raise OSError("the outcome journal is not open")
        return closed

    def discard(self, path: Path) -> None:
        """Delete a generation whose batches are committed."""
        path.unlink(missing_ok=True)

    def close(self, *, applied: bool) -> None:
        """Close the journal; when everything was ``applied``, its files go too (else they
        stay, and the next worker on the host replays them)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock is None:
            return
        if applied:
            for path in self._generations():
                path.unlink(missing_ok=True)
            (self.directory / f"{self._stem}.lock").unlink(missing_ok=True)
        os.close(self._lock)
        self._lock = None

    def _start(self) -> None:
        self._generation += 1
        self._path = self.directory / f"{self._stem}.{self._generation}.jsonl"
        self._fd = os.open(
            self._path,
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            PRIVATE_FILE_MODE,
        )

    def _generations(self) -> list[Path]:
        return _generations(self.directory, self._stem)


def _generations(directory: Path, stem: str) -> list[Path]:
    return sorted(directory.glob(f"{_glob_escape(stem)}.*.jsonl"))


def _glob_escape(text: str) -> str:
    """``text`` with the characters glob treats as patterns escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


@dataclass
class DeadJournal:
    """The journal of a worker that is gone, locked by the caller until :meth:`done` (its
    rows are committed: the files go) or :meth:`release` (they stay for another time)."""

    worker: str
    rows: PreparedFinish
    lock: int
    files: list[Path]

    def done(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        if self.lock >= 0:
            os.close(self.lock)
            self.lock = -1


def claim_dead(directory: Path) -> list[DeadJournal]:
    """The journals in ``directory`` of workers that are gone (their lock could be taken),
    each locked by the caller, who must call ``done`` or ``release`` on each."""
    if not directory.is_dir():
        return []
    found = []
    for lock_path in sorted(directory.glob("*.lock")):
        try:
            lock = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its worker closed it meanwhile
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            worker = lock_path.read_text(encoding="utf-8", errors="replace")
            if not worker:
                # Created a moment ago: its worker is about to lock it and sign it.
                raise BlockingIOError
            paths = _generations(directory, lock_path.name[: -len(".lock")])
            lines: list[bytes] = []
            for path in paths:
                lines += path.read_bytes().splitlines()
        except BlockingIOError:
            os.close(lock)  # its worker lives
            continue
        except OSError:
            os.close(lock)
            log.exception("cannot read the outcome journal %s; trying again later", lock_path)
            continue
        found.append(DeadJournal(worker, decode(lines), lock, [*paths, lock_path]))
    return found


Apply = Callable[[str, PreparedFinish], Awaitable[int]]


async def replay_dead(directory: Path, apply: Apply) -> int:
    """Apply the journals of workers that are gone with ``apply(worker, rows)`` and delete
    them; how many messages were written. A journal whose apply fails is left for the next
    time."""
    total = 0
    for dead in claim_dead(directory):
        try:
            if message_ids(dead.rows):
                total += await apply(dead.worker, dead.rows)
                log.warning(
                    "applied the journalled outcomes of worker %s, which is gone", dead.worker
                )
            dead.done()
        except Exception:
            log.exception(
                "replaying the outcome journal of %s failed; trying again later", dead.worker
            )
        finally:
            dead.release()
    return total
