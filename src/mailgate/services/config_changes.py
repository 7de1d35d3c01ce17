"""The changes a configuration file makes, and carrying them out in order.

:mod:`mailgate.services.config_plan` makes the list of :class:`Change` values; :func:`apply`
runs their steps and stops at the first error, reported at its path in the file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mailgate.domain.roles import Principal
from mailgate.errors import RequestError
from mailgate.services.config_export import TenantState
from mailgate.services.config_file import ConfigFileError
from mailgate.services.context import Caller, Context


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    UNCHANGED = "unchanged"


@dataclass(slots=True)
class Runner:
    """What the steps of an apply share: the callers per tenant and the server ids by name."""

    ctx: Context
    principal: Principal
    callers: dict[str, Caller]
    server_ids: dict[tuple[str, str], str]


Step = Callable[[Runner], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Change:
    """One line of the plan; ``step`` (None when unchanged) carries it out."""

    action: Action
    kind: str
    tenant: str
    name: str
    path: str
    fields: tuple[str, ...] = ()
    note: str = ""
    step: Step | None = field(default=None, repr=False, compare=False)


# Applying ----------------------------------------------------------------------------------

#: Service field names and where they are in the file.
_FILE_FIELDS = {
    "slug": "",
    "mail_server_id": "mail_server",
    "fallback_server_id": "fallback_server",
    "addresses": "test_list.addresses",
}


def _in_file(exc: RequestError) -> RequestError:
    if not exc.errors:
        return exc
    first = exc.errors[0].field
    head, sep, rest = first.partition("[")
    if head in _FILE_FIELDS:
        renamed = _FILE_FIELDS[head] + (sep + rest if sep else "")
        return ConfigFileError(renamed, exc.errors[0].message)
    return exc


async def apply(
    ctx: Context,
    principal: Principal,
    changes: Sequence[Change],
    states: Mapping[str, TenantState],
    *,
    done: Callable[[Change], object] | None = None,
) -> None:
    """Carry out ``changes`` in order, calling ``done`` after each one that wrote; the first
    error stops, raised as a :class:`ConfigFileError` at its path in the file."""
    runner = Runner(
        ctx=ctx,
        principal=principal,
        callers={slug: s.caller for slug, s in states.items() if s.caller is not None},
        server_ids={(slug, s.name): s.id for slug, st in states.items() for s in st.servers},
    )
    for change in changes:
        if change.step is None:
            continue
        try:
            await change.step(runner)
        except ConfigFileError:
            raise
        except RequestError as exc:
            raise ConfigFileError.at(change.path, _in_file(exc)) from None
        if done is not None:
            done(change)
