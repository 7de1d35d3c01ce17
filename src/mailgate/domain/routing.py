"""Routing a message (SPEC.md section 2): sender, mail server, test list. Pure decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailgate.domain.model import EmailAccount, TestList


@dataclass(frozen=True, slots=True)
class Recipients:
    """The recipients a message was asked for, by header (addresses in wire form)."""

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc


@dataclass(frozen=True, slots=True)
class Routing:
    """Who the message goes to on the wire, and whether a test list replaced them."""

    recipients: tuple[str, ...]
    redirected: bool = False
    original: Recipients | None = None


def apply_test_list(recipients: Recipients, test_list: TestList | None) -> Routing:
    """Route to the test list when it is active; remember who was asked for.

    ``test_list`` is resolved (:func:`resolve_test_list`): its addresses are all it names."""
    if test_list is None or not test_list.active or not test_list.addresses:
        return Routing(recipients=_unique(recipients.all))
    return Routing(recipients=_unique(test_list.addresses), redirected=True, original=recipients)


def resolve_test_list(
    test_list: TestList, user_emails: Mapping[str, str]
) -> tuple[TestList, tuple[str, ...]]:
    """The list with its users replaced by their addresses now (``user_emails``: address by
    user id), and the ids of the users who no longer exist (left out).

    An active list that names nobody who still exists cannot redirect: rather than send
    the mail to its real recipients, a RouteError names ``test_list``."""
    if not test_list.active:
        return test_list, ()
    found = [user_emails[u] for u in test_list.users if u in user_emails]
    missing = tuple(u for u in test_list.users if u not in user_emails)
    addresses = _unique((*test_list.addresses, *found))
    if not addresses:
        raise RouteError(
            "test_list",
            "the active test list names only users that were deleted; add an address or "
            "a user to the list, or switch it off",
        )
    return TestList(addresses=addresses, active=True), missing


def _unique(addresses: Sequence[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for address in addresses:
        key = address.lower()
        if key not in seen:
            seen.add(key)
            out.append(address)
    return tuple(out)


class RouteError(Exception):
    """No sender or no server could be found; ``field`` says which request field to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def choose_sender(
    accounts_by_address: Mapping[str, EmailAccount],
    default: EmailAccount | None,
    requested: str | None,
) -> EmailAccount:
    """The named account (by address, case-insensitive), else the tenant's default account."""
    if requested:
        account = accounts_by_address.get(requested.lower())
        if account is None:
            raise RouteError(
                "from", f"{requested} is not an email account of this tenant; add it first"
            )
        return account
    if default is None:
        raise RouteError(
            "from",
            "no sender given and the tenant has no default email account; "
            "name an account in 'from' or mark one as default",
        )
    return default


def choose_server(
    *,
    stage_server: str | None,
    account: EmailAccount,
    default_server: str | None,
) -> str:
    """The stage's server, else the sender account's server, else the tenant default.

    An account whose server was deleted (``mail_server_id`` null) cannot send (SPEC.md
    section 1): a 422 names ``from`` whatever the stage or the default server."""
    if account.mail_server_id is None:
        raise RouteError(
            "from",
            f"the email account {account.address} has no mail server (its server was "
            "deleted), so it cannot send; link a mail server to the account",
        )
    server = stage_server or account.mail_server_id or default_server
    if server is None:
        raise RouteError(
            "stage",
            "no mail server for this message: assign one to the stage, link one to the "
            f"account {account.address}, or mark a default server",
        )
    return server


@dataclass(frozen=True, slots=True)
class TenantRouting:
    """A tenant's routing now, as waiting mail needs it (no IO): the server of each stage,
    each email account's address and server (by account id) and the default server."""

    stages: Mapping[str, str | None]
    accounts: Mapping[str, tuple[str, str | None]]
    default_server: str | None
    #: Server names by id, for messages that name the server chosen.
    server_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteAgain:
    """Where waiting mail goes by the routing now: ``server_id`` and ``via`` (which rule
    chose it), or no server and ``reason`` (what to fix)."""

    server_id: str | None
    via: str = ""
    reason: str = ""


def route_again(routing: TenantRouting, *, stage: str | None, account_id: str | None) -> RouteAgain:
    """Route mail already accepted again, by the rules of acceptance (:func:`choose_server`):
    the stage's server, else the account's server, else the tenant default. An account whose
    server was deleted cannot send, whatever the stage (as at acceptance); mail whose account
    was deleted is routed by its stage, else the tenant default."""
    account = routing.accounts.get(account_id) if account_id else None
    if account is not None and account[1] is None:
        return RouteAgain(
            None,
            reason=f"the email account {account[0]} has no mail server (its server was "
            "deleted), so it cannot send: link a mail server to the account",
        )
    stage_server = routing.stages.get(stage) if stage else None
    if stage_server:
        return RouteAgain(stage_server, via=f"the server of stage {stage!r}")
    if account is not None and account[1]:
        return RouteAgain(account[1], via=f"the server of the email account {account[0]}")
    if routing.default_server:
        return RouteAgain(routing.default_server, via="the tenant's default server")
    where = f"stage {stage!r}" if stage else "this message"
    fix = "assign one to the stage or mark" if stage else "mark"
    return RouteAgain(
        None,
        reason=f"no mail server for {where} (its mail server was deleted): {fix} a default server",
    )
