"""Request and response bodies of apps and their test lists."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, Field

from mailgate.domain.model import App, TestList
from mailgate.web.api.schemas import Strict


class AppIn(Strict):
    name: str = Field(max_length=100)


class UserRef(Strict):
    """A user of the tenant, by ``id`` or by ``email`` (one is enough)."""

    id: str | None = Field(None, max_length=64)
    email: str | None = Field(None, max_length=320)


class TestListBody(Strict):
    """A test list as written: addresses, users of the tenant (by id or e-mail address, or
    ``{id}``/``{email}`` as the answers show them) and the active toggle."""

    __test__ = False  # not a pytest class

    addresses: list[str] = Field(default_factory=list)
    users: list[str | UserRef] = Field(default_factory=list)
    active: bool = False

    def user_entries(self) -> list[object]:
        return [u if isinstance(u, str) else u.model_dump(exclude_none=True) for u in self.users]


class ListedUser(BaseModel):
    id: str
    email: str | None = Field(description="The user's address now; null: the user was deleted.")


class TestListOut(BaseModel):
    __test__ = False  # not a pytest class

    addresses: list[str]
    users: list[ListedUser]
    active: bool

    @classmethod
    def of(cls, t: TestList, emails: Mapping[str, str]) -> TestListOut:
        return cls(
            addresses=list(t.addresses),
            users=[ListedUser(id=u, email=emails.get(u)) for u in t.users],
            active=t.active,
        )


class AppOut(BaseModel):
    id: str
    name: str
    test_list: TestListOut = Field(
        description="The list for mail that names no stage (see test_lists for each stage)."
    )
    test_lists: dict[str, TestListOut] = Field(
        description="The list of each stage that has one, by stage name."
    )
    created_at: datetime

    @classmethod
    def of(cls, a: App, emails: Mapping[str, str]) -> AppOut:
        return cls(
            id=a.id,
            name=a.name,
            test_list=TestListOut.of(a.test_list, emails),
            test_lists={k: TestListOut.of(v, emails) for k, v in a.stage_lists.items()},
            created_at=a.created_at,
        )
