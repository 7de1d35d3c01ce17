"""Send bodies are read by pydantic's JSON reader in one pass; anything that reader does not
take is read the usual way, so every answer stays what it was (web/api/json_body.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailgate.web.api import schemas
from tests.delivery.conftest import T, Tenant

GOOD = {"to": ["rcpt@example.com"], "subject": "Hi", "text": "Hello.", "metadata": {"n": 1.5}}


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """``strings_checked`` of every value scan the request models make."""
    seen: list[bool] = []
    real = schemas.json_value_problem

    def spy(value: object, *, strings_checked: bool = False) -> tuple[str, str] | None:
        seen.append(strings_checked)
        return real(value, strings_checked=strings_checked)

    monkeypatch.setattr(schemas, "json_value_problem", spy)
    return seen


async def post(tenant: Tenant, path: str, content: bytes, **headers: str) -> Any:
    return await tenant.client.post(
        f"{T}/messages{path}",
        content=content,
        headers={**tenant.sender, "Content-Type": "application/json", **headers},
    )


async def test_a_clean_batch_is_read_in_one_pass(tenant: Tenant, scans: list[bool]) -> None:
    body = json.dumps({"messages": [GOOD, {**GOOD, "to": [{"email": "b@example.com"}]}]})
    r = await post(tenant, "/batch", body.encode())
    assert r.status_code == 200, r.text
    assert [item["status"] for item in r.json()["items"]] == [202, 202]
    # Strings are not scanned again; lists and objects are searched for numbers only.
    assert scans and all(scans)
    one = await tenant.message(r.json()["items"][1]["id"])
    assert one["metadata"] == {"n": 1.5}
    assert [rcpt["email"] for rcpt in one["recipients"]] == ["b@example.com"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metadata": {"n": float("nan")}}, "messages[0].metadata.n"),
        ({"metadata": {"deep": [1, {"x": float("-inf")}]}}, "messages[0].metadata.deep[1].x"),
        ({"text": "a\u0000b"}, "messages[0].text"),
        ({"subject": 7}, "messages[0].subject"),
        ({"unknown": 1}, "messages[0].unknown"),
    ],
)
async def test_refusals_are_read_the_usual_way(
    tenant: Tenant, scans: list[bool], fields: dict[str, Any], field: str
) -> None:
    body = json.dumps({"messages": [{**GOOD, **fields}]})
    r = await post(tenant, "/batch", body.encode())
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert False in scans  # the usual reading scanned the strings too


async def test_bodies_only_pythons_reader_takes_are_still_accepted(tenant: Tenant) -> None:
    single = json.dumps(GOOD)
    for content in (
        b"\xef\xbb\xbf" + single.encode(),  # a UTF-8 byte order mark
        single.encode("utf-16"),  # Python's reader detects UTF-16 and UTF-32
    ):
        r = await post(tenant, "", content)
        assert r.status_code == 202, r.text


async def test_text_that_is_not_json_is_the_usual_400(tenant: Tenant) -> None:
    not_json = "The body is not valid JSON."
    for path, content, detail in (
        ("/batch", b'{"messages": [', not_json),
        ("", b'{"to": ["a@example.com"], "text": "x",}', not_json),
        ("", b'{"to": ["a@example.com"], "text": "\xff"}', "There was an error parsing the body"),
    ):
        r = await post(tenant, path, content)
        assert r.status_code == 400, r.text
        assert r.json()["detail"] == detail
