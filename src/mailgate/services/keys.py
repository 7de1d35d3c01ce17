"""Rotating the secret-box key while the instance runs (``mailgate keys rotate``).

The steps, with a key file:

1. ``add``: write the new key first in the file, the old keys after it. Every running
   process reads the file again before it seals a value and when it meets a value sealed
   with a key it does not hold, so from here on new secrets are sealed with the new key and
   every process can open both.
2. ``wait``: a short pause for writes that had sealed with the old key before step 1 to
   commit.
3. ``reseal``: every value not sealed with the new key is sealed again, in short
   transactions, each update a compare-and-set (a secret changed meanwhile is never
   overwritten); repeated until a pass finds nothing left.
4. ``drop``: the file keeps only the new key. Only now, when no row needs them, do the old
   keys go.

With ``MAILGATE_SECRET_KEYS`` a process cannot learn a new key by itself: put the new key
first in every process's environment and restart them, run this (steps 3 only), then remove
the old key and restart again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailgate.errors import SecretKeyError
from mailgate.storage import rotation
from mailgate.storage.db import Database
from mailgate.storage.secretbox import SecretBox, generate_key, read_key_file, write_key_file

#: How long step 2 waits: longer than any transaction that seals a secret.
KEY_PICKUP_SECONDS = 2.0
#: Step 3 stops after this many passes if processes keep sealing with an old key.
MAX_PASSES = 5


@dataclass(frozen=True, slots=True)
class RotationResult:
    resealed: int
    passes: int
    old_keys_dropped: bool


async def rotate(
    db: Database,
    *,
    key_file: Path | None,
    env_keys: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    on_step: Callable[[str, int], None] | None = None,
    pickup_seconds: float = KEY_PICKUP_SECONDS,
) -> RotationResult:
    """Run the rotation (see the module docstring); ``on_step(name, values_to_do)``."""
    if env_keys:
        box = SecretBox(list(env_keys))
    else:
        if key_file is None:
            raise ValueError("a key file or environment keys are needed")
        keys = [generate_key(), *read_key_file(key_file)]
        write_key_file(key_file, keys)
        if on_step is not None:
            on_step("add", 0)
        box = SecretBox(keys)
        await asyncio.sleep(pickup_seconds)
    resealed = 0
    passes = 0
    while passes < MAX_PASSES:
        stale = await rotation.count_stale(db, box)
        if not stale:
            break
        passes += 1
        if on_step is not None:
            on_step("reseal", stale)
        resealed += await rotation.reseal_all(db, box, progress=progress)
        if not env_keys:
            await asyncio.sleep(pickup_seconds / 2)
    left = await rotation.count_stale(db, box)
    dropped = False
    if not env_keys and key_file is not None and not left:
        write_key_file(key_file, keys[:1])
        dropped = True
        if on_step is not None:
            on_step("drop", 0)
    return RotationResult(resealed=resealed, passes=passes, old_keys_dropped=dropped)


async def key_problem(db: Database, box: SecretBox) -> str | None:
    """Why this process cannot open the stored secrets, or None when it can (``/readyz``)."""
    try:
        await rotation.verify_keys(db, box)
    except SecretKeyError as exc:
        return str(exc)
    return None
