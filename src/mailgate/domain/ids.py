"""Opaque, time-ordered identifiers.

An id is 26 characters of Crockford base32: 48 bits of milliseconds since the epoch followed
by 80 random bits (from the OS), so ids sort by creation time (cursor pagination relies on
it) and cannot be guessed.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Two characters for every 10-bit value: 13 look-ups spell a 130-bit number.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


class _RandomSource:
    """Bytes from the OS's random source (``os.urandom``), read 4 KiB at a time: a busy API
    names a thousand messages a second and more, and each read is a system call. Every byte
    is handed out once, under a lock (threads), and a forked child starts afresh (it must
    not hand out its parent's bytes again)."""

    _CHUNK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._used = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._used + count > len(self._buffer):
                self._buffer = os.urandom(max(self._CHUNK, count))
                self._used = 0
            start = self._used
            self._used = start + count
            return self._buffer[start : start + count]

    def forget(self) -> None:
        """In a forked child: drop the parent's bytes (and its lock, which may be held)."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._used = 0


_RANDOM = _RandomSource()
os.register_at_fork(after_in_child=_RANDOM.forget)


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS's random source, each handed out once."""
    return _RANDOM.take(count)


def new_id(*, now_ms: int | None = None) -> str:
    """A new id; ``now_ms`` fixes the time part (tests)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _spell(ms << 80 | int.from_bytes(_RANDOM.take(10), "big"))


def new_ids(count: int, *, now_ms: int | None = None) -> list[str]:
    """``count`` new ids of the same millisecond, with one read of the OS's random source
    for all of them (a worker names a batch of attempts at once)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    pool = _RANDOM.take(10 * count)
    stamp = ms << 80
    return [
        _spell(stamp | int.from_bytes(pool[i : i + 10], "big")) for i in range(0, 10 * count, 10)
    ]


def _spell(value: int) -> str:
    """The 26 characters of a 128-bit id (two spare zero bits make it 130)."""
    value <<= 2
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])
