"""Several processes on one host: start them, restart the ones that die, stop them.

A single Python process uses one core; ``mailgate worker --processes N`` runs N child
``mailgate worker`` processes so a host's cores all deliver, and ``mailgate serve`` runs its
extra worker processes and HTTP API processes (which accept on the port ``serve`` opened,
handed down as a file descriptor) the same way. Children that exit unexpectedly
are restarted (their leased mail is reclaimed when the leases expire); a child that keeps
dying makes the supervisor give up rather than loop, and a child that exits with the
configuration-error status (2: wrong key, schema not upgraded, bad settings) stops them all at
once, because a replacement would fail the same way. ``SIGTERM`` is passed on to every child,
which then stops gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence

log = logging.getLogger("mailgate.supervisor")

#: More restarts than this within RESTART_WINDOW seconds means something is wrong.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_GRACE = 60.0
#: The exit status of ``mailgate`` commands for configuration errors (see ``cli._run``).
CONFIGURATION_ERROR = 2


def worker_command(tasks: int) -> list[str]:
    """The command line of a worker process of ``tasks`` tasks."""
    return [sys.executable, "-m", "mailgate", "worker", "--count", str(tasks)]


async def supervise(
    command: Sequence[str],
    *,
    processes: int,
    stop: asyncio.Event,
    pass_fds: Sequence[int] = (),
    kind: str = "worker",
) -> int:
    """Run ``processes`` children of ``command`` until ``stop``; the exit status. Each
    inherits ``pass_fds``; ``kind`` names them in the log."""

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, pass_fds=tuple(pass_fds)
        )

    children = [await spawn() for _ in range(processes)]
    restarts: deque[float] = deque()
    status = 0
    try:
        while not stop.is_set():
            waits = {asyncio.create_task(c.wait()): i for i, c in enumerate(children)}
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in [*waits, stopping]:
                if task not in done:
                    task.cancel()
            if stop.is_set():
                break
            for task in done:
                index = waits.get(task)
                if index is None:
                    continue
                now = time.monotonic()
                restarts.append(now)
                while restarts and now - restarts[0] > RESTART_WINDOW:
                    restarts.popleft()
                code = children[index].returncode
                if code == CONFIGURATION_ERROR:
                    log.error("a %s process found a configuration error; stopping", kind)
                    stop.set()
                    status = CONFIGURATION_ERROR
                    break
                if len(restarts) > MAX_RESTARTS:
                    log.error("%s processes keep exiting (last status %s); giving up", kind, code)
                    stop.set()
                    status = 1
                    break
                log.warning("%s process exited with status %s; starting another", kind, code)
                await asyncio.sleep(1.0)
                children[index] = await spawn()
    finally:
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), timeout=STOP_GRACE)
            except TimeoutError:
                log.error("%s process %s did not stop in time; killing it", kind, child.pid)
                child.kill()
                await child.wait()
            if child.returncode not in (0, None) and status == 0 and not stop.is_set():
                status = child.returncode
    return status
