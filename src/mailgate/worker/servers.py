"""The worker's view of mail servers: engine configs by id, refreshed often, plus health."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from mailgate.domain.model import MailServer
from mailgate.domain.servers import ServerStatus
from mailgate.engines.config import ServerConfig
from mailgate.engines.server_config import server_config
from mailgate.runtime import Context
from mailgate.storage import servers as server_store

#: How long a loaded server configuration is trusted before it is read again, so an edit
#: reaches running workers within about this many seconds.
REFRESH_SECONDS = 2.0
#: How long a server that failed at the connection level hands its mail to its fallback.
FALLBACK_HOLD_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ServerEntry:
    server: MailServer
    config: ServerConfig


class ServerDirectory:
    """Configs of the servers the worker delivers through, and which ones are failing."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._entries: dict[str, tuple[float, ServerEntry | None]] = {}
        self._failing_until: dict[str, float] = {}
        self._status: dict[str, ServerStatus] = {}

    async def load(self, server_ids: Iterable[str]) -> dict[str, ServerEntry | None]:
        """Entries for ``server_ids`` (None for a deleted server), reading stale ones again."""
        now = time.monotonic()
        wanted = set(server_ids)
        stale = {
            i
            for i in wanted
            if i not in self._entries or now - self._entries[i][0] > REFRESH_SECONDS
        }
        if stale:
            async with self._ctx.db.read() as tx:
                found = await server_store.load_for_delivery(tx, self._ctx.box, stale)
            for server_id in stale:
                got = found.get(server_id)
                entry = None
                if got is not None:
                    server, secrets, trusted = got
                    entry = ServerEntry(server, server_config(server, secrets, trusted=trusted))
                self._entries[server_id] = (now, entry)
                if entry is not None:
                    self._status[server_id] = entry.server.status
        return {i: self._entries[i][1] for i in wanted}

    def forget(self, server_ids: Iterable[str]) -> None:
        """Drop cached entries (servers found deleted), so none is trusted again."""
        for server_id in server_ids:
            self._entries.pop(server_id, None)

    def known_status(self, server_id: str) -> ServerStatus | None:
        return self._status.get(server_id)

    def note_status(self, server_id: str, status: ServerStatus) -> bool:
        """Remember an observed status; True when it changed (worth writing down)."""
        changed = self._status.get(server_id) is not status
        self._status[server_id] = status
        return changed

    def mark_failing(self, server_id: str) -> None:
        self._failing_until[server_id] = time.monotonic() + FALLBACK_HOLD_SECONDS

    def is_failing(self, server_id: str) -> bool:
        return self._failing_until.get(server_id, 0.0) > time.monotonic()
