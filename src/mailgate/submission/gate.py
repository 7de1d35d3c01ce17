"""Connection caps of the SMTP submission listener, and warnings logged once per interval.

A connection flood must not take the process down: every file descriptor it holds is one
the API, the database and the workers cannot have. :class:`ConnectionGate` counts open
connections in all and per client address; past either cap a new connection is answered
``421`` and closed at once. The condition is logged once per :data:`NOTICE_INTERVAL`, with
the number of connections refused since, never once per connection.

When the process runs out of descriptors anyway (other listeners, a low ``ulimit -n``),
asyncio reports each failed ``accept()`` to the loop's exception handler, about once a second
per listener and with a traceback; :func:`quiet_accept_errors` turns those reports into one
warning per interval too.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mailgate.submission")

#: Seconds between two warnings about the same condition.
NOTICE_INTERVAL = 60.0


class Notices:
    """Warnings logged at most once per ``interval`` per key, counting those held back."""

    def __init__(
        self, interval: float = NOTICE_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        suffix = f" ({held} more since the last warning)" if held else ""
        log.warning(message + suffix, *args)


class ConnectionGate:
    """Open connections in all and per client address, against their caps."""

    def __init__(self, max_total: int, max_per_client: int, notices: Notices) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        self._by_client: dict[str, int] = {}
        self._notices = notices

    def admit(self, client: str) -> bool:
        """Count a new connection from ``client``; False (and a warning) when over a cap."""
        if self.total >= self.max_total:
            self._notices.warn(
                "total",
                "SMTP submission refused connections: %d open, the most allowed "
                "(MAILGATE_SMTP_MAX_CONNECTIONS)",
                self.max_total,
            )
            return False
        if self._by_client.get(client, 0) >= self.max_per_client:
            self._notices.warn(
                "client",
                "SMTP submission refused connections from %s: %d open from that address, "
                "the most allowed (MAILGATE_SMTP_MAX_CONNECTIONS_PER_CLIENT)",
                client,
                self.max_per_client,
            )
            return False
        self.total += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1
        return True

    def release(self, client: str) -> None:
        """A connection counted by :meth:`admit` has closed."""
        self.total -= 1
        left = self._by_client.get(client, 0) - 1
        if left > 0:
            self._by_client[client] = left
        else:
            self._by_client.pop(client, None)


_ACCEPT_FAILED = "socket.accept() out of system resource"

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, notices: Notices) -> Callable[[], None]:
    """Log the loop's "accept() out of system resource" reports once per interval (a
    warning without traceback); every other report goes where it went before. Returns the
    function that puts the previous handler back."""
    previous: Handler | None = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_FAILED:
            error = context.get("exception")
            notices.warn(
                "accept",
                "a listener cannot accept connections: %s (too many open files; lower the "
                "connection caps or raise the process's descriptor limit)",
                getattr(error, "strerror", None) or error,
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)

    def restore() -> None:
        if loop.get_exception_handler() is handler:
            loop.set_exception_handler(previous)

    return restore


#: Descriptors kept for everything but submission connections (API, database pool, workers).
RESERVED_DESCRIPTORS = 128


def descriptor_warning(max_connections: int) -> str | None:
    """Why ``max_connections`` does not fit the process's descriptor limit, if it does not."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or max_connections + RESERVED_DESCRIPTORS <= soft:
        return None
    return (
        f"MAILGATE_SMTP_MAX_CONNECTIONS ({max_connections}) leaves fewer than "
        f"{RESERVED_DESCRIPTORS} of the process's {soft} file descriptors to the API, the "
        "database and the workers: lower it or raise the limit (ulimit -n)"
    )
