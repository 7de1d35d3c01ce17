"""Long-running processes (`serve`, its API processes, `worker`) settle the garbage collector
once started: what exists then is frozen, and young collections run less often."""

from __future__ import annotations

import json
import subprocess
import sys

from mailgate.cli import GC_THRESHOLD

_PROBE = """
import gc, json
from mailgate import cli
before = (gc.get_freeze_count(), gc.get_threshold())
cli._settle()
print(json.dumps([before, [gc.get_freeze_count(), gc.get_threshold()], gc.get_count()[0]]))
"""


def test_settle_freezes_what_exists_and_collects_less_often() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    (frozen_before, threshold_before), (frozen, threshold), young = json.loads(done.stdout)
    assert frozen_before == 0
    assert threshold_before[0] < GC_THRESHOLD[0]
    # The modules of the command line are imported: tens of thousands of objects.
    assert frozen > 20_000
    assert tuple(threshold) == GC_THRESHOLD
    assert young < 100  # collected just before freezing
