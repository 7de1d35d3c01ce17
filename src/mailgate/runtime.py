"""What every use-case and worker receives: the database, the secret box, the policy.

Sits above storage and engines and below services and the worker, which both use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mailgate.domain.worker_health import WorkerHealth
from mailgate.settings import Settings
from mailgate.storage.db import Database
from mailgate.storage.secretbox import SecretBox


@dataclass(frozen=True, slots=True)
class InstancePolicy:
    """Instance settings that use-cases apply (read once from :class:`Settings`)."""

    allow_port_25: bool = False
    allowed_networks: tuple[str, ...] = ()
    max_recipients: int = 100
    max_message_bytes: int = 25 * 1024 * 1024
    give_up_hours: float = 72.0
    retention_days: float = 30.0
    lease_seconds: float = 120.0
    imap_sync_interval: float = 300.0
    dns_resolver: str | None = None
    #: ``MAILGATE_EXPECT_WORKERS``, for ``/readyz`` (see ``worker_health.assess_fleet``).
    expect_workers: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> InstancePolicy:
        return cls(
            allow_port_25=settings.allow_port_25,
            allowed_networks=tuple(settings.allowed_networks),
            max_recipients=settings.max_recipients,
            max_message_bytes=settings.max_message_bytes,
            give_up_hours=settings.give_up_hours,
            retention_days=settings.retention_days,
            lease_seconds=settings.lease_seconds,
            imap_sync_interval=settings.imap_sync_interval,
            dns_resolver=settings.dns_resolver,
            expect_workers=settings.expect_workers,
        )


@dataclass(slots=True)
class Context:
    """The shared dependencies of use-cases (one per process)."""

    db: Database
    box: SecretBox
    policy: InstancePolicy = field(default_factory=InstancePolicy)
    admin_token: str | None = None
    #: Called after messages are committed, so in-process workers wake at once.
    wake: Callable[[], None] | None = None
    #: The delivery workers of this process, for ``/readyz`` and ``/metrics``.
    workers: WorkerHealth = field(default_factory=WorkerHealth)
