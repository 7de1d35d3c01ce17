"""Routing health: where a tenant's mail would go now, on each stage, and what is wrong.

A pure function over the configuration (no IO), so the API, the web UI's banners and
``mailgate doctor`` show the same verdicts. Each problem says what fixes it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mailgate.domain.model import EmailAccount, MailServer
from mailgate.domain.servers import ServerStatus


class RouteReason(StrEnum):
    STAGE = "stage"  # the stage's own server
    ACCOUNT = "account"  # the sending account's server
    DEFAULT = "default"  # the tenant's default server


class Severity(StrEnum):
    ERROR = "error"  # mail does not go out
    WARNING = "warning"  # mail goes out, but something is off


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    severity: Severity
    message: str
    action: str
    stage: str | None = None
    server_id: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Where mail from the default account goes on ``stage`` (None: no stage given)."""

    stage: str | None
    server_id: str | None
    server_name: str | None
    reason: RouteReason | None


@dataclass(frozen=True, slots=True)
class RoutingHealth:
    routes: tuple[Route, ...]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not any(p.severity is Severity.ERROR for p in self.problems)


def _route(
    stage: str | None,
    stage_server: str | None,
    account: EmailAccount | None,
    default_server: str | None,
    names: Mapping[str, str],
) -> Route:
    if account is not None and not account.mail_server_id:
        # Its server was deleted: the account cannot send, whatever the stage.
        return Route(stage, None, None, None)
    if stage_server:
        server, reason = stage_server, RouteReason.STAGE
    elif account is not None and account.mail_server_id:
        server, reason = account.mail_server_id, RouteReason.ACCOUNT
    elif default_server:
        server, reason = default_server, RouteReason.DEFAULT
    else:
        return Route(stage, None, None, None)
    return Route(stage, server, names.get(server), reason)


def assess(
    *,
    stage_servers: Mapping[str, str | None],
    accounts: Sequence[EmailAccount],
    servers: Sequence[MailServer],
    held: Mapping[str, int],
    dkim_domains: Collection[str],
) -> RoutingHealth:
    """Routes for the tenant default and each stage, and every problem found.

    ``held`` counts messages held per server (after authentication failed);
    ``dkim_domains`` are the domains with a usable DKIM key (a parent domain covers its
    subdomains).
    """
    names = {s.id: s.name for s in servers}
    default_account = next((a for a in accounts if a.is_default), None)
    default_server = next((s.id for s in servers if s.is_default), None)
    routes = [_route(None, None, default_account, default_server, names)]
    routes += [
        _route(stage, sid, default_account, default_server, names)
        for stage, sid in sorted(stage_servers.items())
    ]
    problems: list[Problem] = []
    if default_account is None:
        problems.append(
            Problem(
                "no_default_account",
                Severity.WARNING,
                "No default email account: a message without 'from' is refused.",
                "Mark an email account as default.",
            )
        )
    for account in accounts:
        if not account.mail_server_id:
            problems.append(
                Problem(
                    "account_without_server",
                    Severity.ERROR,
                    f"The email account {account.address} has no mail server (its server "
                    "was deleted): mail from it is refused with 422.",
                    f"Link a mail server to the email account {account.address}.",
                )
            )
    for route in routes:
        if route.server_id is None:
            where = f"on stage {route.stage!r}" if route.stage else "without a stage"
            problems.append(
                Problem(
                    "no_route",
                    Severity.ERROR,
                    f"Mail {where} has no mail server: it is refused with 422.",
                    "Assign a mail server to the stage, or mark a server as the default.",
                    stage=route.stage,
                )
            )
    used = {r.server_id for r in routes if r.server_id} | {
        a.mail_server_id for a in accounts if a.mail_server_id
    }
    for server in servers:
        if server.id not in used:
            continue
        if server.status is ServerStatus.AUTH_FAILED:
            problems.append(
                Problem(
                    "auth_failing",
                    Severity.ERROR,
                    f"The server {server.name!r} refused its credentials"
                    + (f": {server.status_detail}" if server.status_detail else "."),
                    "Enter the right password or token, then run Test Connection.",
                    server_id=server.id,
                )
            )
        if held.get(server.id):
            problems.append(
                Problem(
                    "server_on_hold",
                    Severity.ERROR,
                    f"{held[server.id]} message(s) are held for {server.name!r} until its "
                    "settings are fixed.",
                    "Fix the server's settings; saving them releases the held mail.",
                    server_id=server.id,
                )
            )
        if server.status is ServerStatus.UNREACHABLE:
            problems.append(
                Problem(
                    "unreachable",
                    Severity.WARNING,
                    f"The last test could not reach {server.name!r}.",
                    "Check the host, port and firewall, then run Test Connection.",
                    server_id=server.id,
                )
            )
    for domain in sorted({a.address.rsplit("@", 1)[1].lower() for a in accounts}):
        if not _covered(domain, dkim_domains):
            problems.append(
                Problem(
                    "dkim_missing",
                    Severity.WARNING,
                    f"Mail from {domain} is not DKIM-signed: receivers may reject or junk it.",
                    f"Create a DKIM key for {domain} and publish its DNS record.",
                )
            )
    return RoutingHealth(routes=tuple(routes), problems=tuple(problems))


def _covered(domain: str, dkim_domains: Collection[str]) -> bool:
    name = domain
    while "." in name:
        if name in dkim_domains:
            return True
        name = name.split(".", 1)[1]
    return False
