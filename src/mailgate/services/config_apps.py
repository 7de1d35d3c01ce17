"""Apps in the configuration file: their test lists per stage, read, compared and written.

An app holds ``test_list`` (the list for mail that names no stage) and ``test_lists`` by
stage name. A list holds ``addresses``, ``users`` (users of the tenant by e-mail address or
id) and ``active``. A file without ``test_lists`` (written before lists belonged to stages)
gives its ``test_list`` to every stage except ``production`` as well, as migration 0011
did and as ``PUT …/apps/{app}/test-list`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailgate.domain.model import NO_STAGE, PRODUCTION_STAGE, App, TestList
from mailgate.errors import RequestError
from mailgate.services.accounts import check_address
from mailgate.services.config_file import ConfigFileError


@dataclass(frozen=True, slots=True)
class ListSpec:
    path: str
    addresses: tuple[str, ...] = ()
    users: tuple[str, ...] = ()  # as the file names them (address or id)
    active: bool = False


@dataclass(frozen=True, slots=True)
class AppSpec:
    name: str
    path: str
    #: The list for mail naming no stage ("") and each stage's, by stage name.
    lists: dict[str, ListSpec]
    #: No ``test_lists`` in the file: ``test_list`` also stands for every non-production stage.
    legacy: bool = False


_LIST_KEYS = ("addresses", "users", "active")


def _table(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(path, "must be a table (an object)")
    return value


def _strings(value: Any, path: str, max_len: int) -> list[str]:
    if not isinstance(value, list):
        raise ConfigFileError(path, "must be a list")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigFileError(f"{path}[{i}]", "must be non-empty text")
        if len(item) > max_len:
            raise ConfigFileError(f"{path}[{i}]", f"at most {max_len} characters")
    return [str(item).strip() for item in value]


def _list(raw: Any, path: str) -> ListSpec:
    table = _table(raw, path)
    for key in table:
        if key not in _LIST_KEYS:
            known = ", ".join(_LIST_KEYS)
            raise ConfigFileError(f"{path}.{key}", f"unknown field; expected one of {known}")
    addresses = []
    for i, value in enumerate(_strings(table.get("addresses", []), f"{path}.addresses", 320)):
        try:
            addresses.append(check_address(value, f"{path}.addresses[{i}]"))
        except RequestError as exc:
            raise ConfigFileError.at("", exc) from None
    active = table.get("active", False)
    if not isinstance(active, bool):
        raise ConfigFileError(f"{path}.active", "must be true or false")
    users = _strings(table.get("users", []), f"{path}.users", 320)
    return ListSpec(path, tuple(addresses), tuple(users), active)


def parse_app(name: str, raw: Any, path: str) -> AppSpec:
    table = _table(raw, path)
    for key in table:
        if key not in ("test_list", "test_lists"):
            raise ConfigFileError(
                f"{path}.{key}", "unknown field; expected one of test_list, test_lists"
            )
    lists: dict[str, ListSpec] = {}
    if "test_list" in table:
        lists[NO_STAGE] = _list(table["test_list"], f"{path}.test_list")
    staged = table.get("test_lists")
    if staged is not None:
        for stage, value in _table(staged, f"{path}.test_lists").items():
            if not stage:
                raise ConfigFileError(f"{path}.test_lists", "a stage name is empty")
            lists[stage] = _list(value, f"{path}.test_lists.{stage}")
    return AppSpec(name, path, lists, legacy=staged is None)


def wanted_lists(
    spec: AppSpec, stages: Sequence[str], users: Mapping[str, str]
) -> dict[str, TestList]:
    """Every list the app should have (stage "" for no stage), users as ids; a stage or a
    user the tenant does not have is an error at its place in the file. ``users``: e-mail
    address by user id."""
    by_email = {email.lower(): user_id for user_id, email in users.items()}
    lists: dict[str, TestList] = {}
    for stage, given in spec.lists.items():
        if stage and stage not in stages:
            raise ConfigFileError(given.path, f"the tenant has no stage {stage!r}")
        ids: list[str] = []
        for i, entry in enumerate(given.users):
            found = entry if entry in users else by_email.get(entry.lower())
            if found is None:
                raise ConfigFileError(
                    f"{given.path}.users[{i}]",
                    f"no user {entry!r} in this tenant (name a user by e-mail address or id)",
                )
            if found not in ids:
                ids.append(found)
        if given.active and not given.addresses and not ids:
            raise ConfigFileError(
                f"{given.path}.addresses", "an active test list needs at least one address or user"
            )
        lists[stage] = TestList(given.addresses, given.active, tuple(ids))
    if spec.legacy and NO_STAGE in lists:
        for stage in stages:
            if stage != PRODUCTION_STAGE:
                lists.setdefault(stage, lists[NO_STAGE])
    return {k: v for k, v in lists.items() if v.active or not v.empty}


def stored_lists(app: App) -> dict[str, TestList]:
    """The app's lists as stored, in the shape of :func:`wanted_lists`."""
    lists = {NO_STAGE: app.test_list, **app.stage_lists}
    return {k: v for k, v in lists.items() if v.active or not v.empty}


def render_list(test_list: TestList, users: Mapping[str, str]) -> dict[str, Any]:
    """A list as the file writes it; users by their address (a deleted user is left out:
    it could not be applied back)."""
    doc: dict[str, Any] = {"addresses": list(test_list.addresses)}
    named = [users[u] for u in test_list.users if u in users]
    if named:
        doc["users"] = named
    doc["active"] = test_list.active
    return doc


def render_app(app: App, users: Mapping[str, str]) -> dict[str, Any]:
    return {
        "test_list": render_list(app.test_list, users),
        "test_lists": {s: render_list(t, users) for s, t in sorted(app.stage_lists.items())},
    }
