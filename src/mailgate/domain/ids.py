"""Opaque, time-ordered identifiers.

An id is 26 characters of Crockford base32: 48 bits of milliseconds since the epoch followed
by 80 random bits (from the OS), so ids sort by creation time (cursor pagination relies on
it) and cannot be guessed.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Two characters for every 10-bit value: 13 look-ups spell a 130-bit number.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def new_id(*, now_ms: int | None = None) -> str:
    """A new id; ``now_ms`` fixes the time part (tests)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = ((ms << 80) | int.from_bytes(os.urandom(10), "big")) << 2
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])
