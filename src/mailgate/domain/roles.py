"""Roles and the permissions they grant (SPEC.md section 1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    MANAGE_EMAIL_CONFIGURATIONS = "email_configurations:manage"
    VIEW_EMAIL_CONFIGURATIONS = "email_configurations:view"
    MANAGE_APPS = "apps:manage"
    SEND_EMAIL = "email:send"
    VIEW_EMAIL_LOGS = "email_logs:view"
    MANAGE_MEMBERS = "members:manage"
    MANAGE_TENANT = "tenant:manage"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    SENDER = "sender"
    VIEWER = "viewer"


_ALL = frozenset(Permission)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: _ALL,
    Role.ADMIN: _ALL - {Permission.MANAGE_MEMBERS, Permission.MANAGE_TENANT},
    Role.DEVELOPER: frozenset(
        {
            Permission.MANAGE_APPS,
            Permission.SEND_EMAIL,
            Permission.VIEW_EMAIL_LOGS,
            Permission.VIEW_EMAIL_CONFIGURATIONS,
        }
    ),
    Role.SENDER: frozenset({Permission.SEND_EMAIL}),
    Role.VIEWER: frozenset({Permission.VIEW_EMAIL_CONFIGURATIONS, Permission.VIEW_EMAIL_LOGS}),
}


def has_permission(role: Role, permission: Permission) -> bool:
    """Whether ``role`` grants ``permission``."""
    return permission in ROLE_PERMISSIONS[role]


class PrincipalKind(StrEnum):
    INSTANCE_ADMIN = "instance_admin"
    TOKEN = "token"  # noqa: S105 - a kind of principal, not a secret
    USER = "user"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the instance admin, a tenant API token or a signed-in user."""

    kind: PrincipalKind
    actor: str
    tenant_id: str | None = None
    role: Role | None = None
    app_id: str | None = None
    token_id: str | None = None

    @property
    def is_instance_admin(self) -> bool:
        return self.kind is PrincipalKind.INSTANCE_ADMIN

    def can(self, permission: Permission) -> bool:
        """Whether this principal holds ``permission`` inside its own tenant."""
        if self.is_instance_admin:
            return True
        return self.role is not None and has_permission(self.role, permission)
