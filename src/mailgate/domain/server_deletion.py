"""Deleting a mail server: what depends on it, and where each dependant goes. No IO.

The REST API, the web UI and the configuration file's ``--prune`` apply the same rule: a
server that holds stages, backs email accounts, is the tenant default or has mail waiting
is deleted only with an explicit reassignment for each of them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from mailgate.errors import FieldError

#: ``stages_to`` / ``accounts_to`` value: leave them without a server.
NONE = "none"
#: ``mail_to`` value: route waiting mail again by the configuration after the delete.
REROUTE = "reroute"


@dataclass(frozen=True, slots=True)
class Dependants:
    """What depends on one server."""

    server_id: str
    server_name: str
    stages: tuple[str, ...] = ()
    #: Addresses of the email accounts linked to the server.
    accounts: tuple[str, ...] = ()
    is_default: bool = False
    #: Names of the servers that fall back to this one (their fallback is cleared).
    fallback_of: tuple[str, ...] = ()
    #: Messages queued, deferred, held or being sent through this server.
    mail: int = 0

    @property
    def any(self) -> bool:
        return bool(self.stages or self.accounts or self.is_default or self.mail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "stages": list(self.stages),
            "accounts": list(self.accounts),
            "is_default": self.is_default,
            "fallback_of": list(self.fallback_of),
            "mail": self.mail,
        }


@dataclass(frozen=True, slots=True)
class Reassignment:
    """Where each dependant goes: another server's id, :data:`NONE` or :data:`REROUTE`."""

    stages_to: str | None = None
    accounts_to: str | None = None
    default_to: str | None = None
    mail_to: str | None = None


def missing(dep: Dependants, plan: Reassignment) -> list[FieldError]:
    """The reassignments the delete needs and was not given (a 409 lists them)."""
    out: list[FieldError] = []
    if dep.stages and plan.stages_to is None:
        out.append(
            FieldError(
                "stages_to",
                f"the server holds stage(s) {', '.join(dep.stages)}: name the server that "
                "takes them, or 'none'",
            )
        )
    if dep.accounts and plan.accounts_to is None:
        out.append(
            FieldError(
                "accounts_to",
                f"email account(s) {', '.join(dep.accounts)} send through the server: name "
                "the server they use instead, or 'none' (they cannot send until one is linked)",
            )
        )
    if dep.is_default and plan.default_to is None:
        out.append(
            FieldError("default_to", "the server is the tenant default: name the new default")
        )
    if dep.mail and plan.mail_to is None:
        out.append(
            FieldError(
                "mail_to",
                f"{dep.mail} message(s) wait for the server: name the server that sends them, "
                "or 'reroute' to route them again after the delete",
            )
        )
    return out


def invalid(
    dep: Dependants, plan: Reassignment, other_servers: Collection[str]
) -> list[FieldError]:
    """Values that name no usable target (a 422 names the field)."""
    out: list[FieldError] = []

    def target(field: str, value: str | None, words: tuple[str, ...]) -> None:
        if value is None or value in words:
            return
        if value == dep.server_id:
            out.append(FieldError(field, "must name another server than the one deleted"))
        elif value not in other_servers:
            choices = " or ".join(f"'{w}'" for w in words)
            suffix = f", or {choices}" if words else ""
            out.append(FieldError(field, f"no mail server {value!r}; give a server id{suffix}"))

    target("stages_to", plan.stages_to, (NONE,))
    target("accounts_to", plan.accounts_to, (NONE,))
    target("mail_to", plan.mail_to, (REROUTE,))
    if plan.default_to == NONE:
        if other_servers:
            out.append(FieldError("default_to", "the tenant keeps a default server: name one"))
    else:
        target("default_to", plan.default_to, ())
    return out


def describe(dep: Dependants) -> str:
    """One sentence naming the dependants (the 409's detail)."""
    parts: list[str] = []
    if dep.stages:
        parts.append(f"stage(s) {', '.join(dep.stages)}")
    if dep.accounts:
        parts.append(f"email account(s) {', '.join(dep.accounts)}")
    if dep.is_default:
        parts.append("the tenant default")
    if dep.mail:
        parts.append(f"{dep.mail} waiting message(s)")
    return (
        f"Mail server {dep.server_name!r} is used by {'; '.join(parts)}. Say where each goes "
        "(stages_to, accounts_to, default_to, mail_to); see GET …/dependants."
    )
