"""Opaque, time-ordered identifiers.

An id is 26 characters of Crockford base32: 48 bits of milliseconds since the epoch followed
by 80 random bits, so ids sort by creation time (cursor pagination relies on it) and cannot
be guessed.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(*, now_ms: int | None = None) -> str:
    """A new id; ``now_ms`` fixes the time part (tests)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
