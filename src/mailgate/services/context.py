"""What every use-case receives: the database, the secret box and the instance policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailgate.domain.model import Tenant
from mailgate.domain.roles import Permission, Principal
from mailgate.errors import NotFound, PermissionDenied
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
        )


@dataclass(slots=True)
class Context:
    """The shared dependencies of use-cases (one per process)."""

    db: Database
    box: SecretBox
    policy: InstancePolicy = field(default_factory=InstancePolicy)
    admin_token: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """A principal acting inside one tenant it may see."""

    principal: Principal
    tenant: Tenant

    @property
    def actor(self) -> str:
        return self.principal.actor

    @property
    def tenant_id(self) -> str:
        return self.tenant.id


def check_tenant_access(principal: Principal, tenant: Tenant, permission: Permission) -> Caller:
    """404 for another tenant's principal (never 403 across tenants), 403 without permission."""
    if not principal.is_instance_admin and principal.tenant_id != tenant.id:
        raise NotFound(f"No tenant {tenant.slug!r}.")
    if not principal.can(permission):
        raise PermissionDenied(
            f"This {principal.kind.value.replace('_', ' ')} (role "
            f"{principal.role.value if principal.role else 'none'}) lacks the permission "
            f"{permission.value!r}."
        )
    return Caller(principal=principal, tenant=tenant)
