"""Engine configuration of a stored server (defined with the engines; re-exported here)."""

from __future__ import annotations

from mailgate.engines.server_config import server_config

__all__ = ["server_config"]
