"""Who is calling, inside which tenant; the shared context is in :mod:`mailgate.runtime`."""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.domain.model import Tenant
from mailgate.domain.roles import Permission, Principal
from mailgate.errors import NotFound, PermissionDenied
from mailgate.runtime import Context, InstancePolicy

__all__ = ["Caller", "Context", "InstancePolicy", "check_tenant_access"]


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
