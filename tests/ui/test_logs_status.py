"""Email Logs: the display status from recipients, the recipients column, bounces shown as
bounces, server names after deletion, search by words and by Message-ID (UI and API)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import insert, update

from mailgate.domain.delivery import display_status
from mailgate.domain.ids import new_id
from mailgate.services.context import Context
from mailgate.storage.base import utcnow
from mailgate.storage.tables import attempts, message_recipients
from tests.conftest import ADMIN
from tests.ui.test_logs import T, _signed_in, _tenant_with_mail


async def _bounce(ctx: Context, message_id: str, email: str) -> None:
    """What an inbound bounce records: the recipient bounced, an ``imap`` log entry."""
    now = utcnow()
    async with ctx.db.transaction() as tx:
        await tx.execute(
            update(message_recipients)
            .where(message_recipients.c.message_id == message_id)
            .where(message_recipients.c.email == email)
            .values(status="bounced", code=550, reply="5.1.1 550 5.1.1 user unknown")
        )
        await tx.execute(
            insert(attempts).values(
                id=new_id(),
                message_id=message_id,
                n=1,
                started_at=now,
                finished_at=now,
                server_id=None,
                engine="imap",
                worker=None,
                outcome="bounced",
                code=550,
                reply="5.1.1 550 5.1.1 user unknown",
                tls_version=None,
                duration_ms=0.0,
                possible_duplicate=False,
                transcript="bounce (dsn)",
            )
        )


def test_display_status_tells_sent_from_bounced_partial_and_failed() -> None:
    assert display_status("sent", ["sent"]) == "sent"
    assert display_status("sent", ["bounced"]) == "bounced"
    assert display_status("sent", ["failed"]) == "failed"
    assert display_status("sent", ["sent", "bounced"]) == "partially sent"
    assert display_status("failed", ["sent", "failed"]) == "partially sent"
    assert display_status("failed", ["failed"]) == "failed"
    assert display_status("queued", ["pending"]) == "queued"


async def test_a_bounced_message_is_listed_as_bounced_with_its_recipients(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    ids = await _tenant_with_mail(api, ctx)
    await _bounce(ctx, ids["First"], "a@example.com")
    b = await _signed_in(browser_factory, api, "viewer")
    page = await b.get("/t/acme/logs")
    row = re.search(rf'<tr data-message="{ids["First"]}">.*?</tr>', page.text, re.S).group(0)
    assert ">bounced</span>" in row and ">sent</span>" not in row
    assert "a@example.com (bounced)" in row
    other = re.search(rf'<tr data-message="{ids["Second"]}">.*?</tr>', page.text, re.S).group(0)
    assert ">sent</span>" in other and "b@example.com" in other

    message = await b.get(f"/t/acme/logs/{ids['First']}")
    assert "Bounce received" in message.text
    assert "550 5.1.1 user unknown" in message.text
    assert "5.1.1 550 5.1.1" not in message.text
    assert "· imap" not in message.text
    assert "/t/acme/suppressions?q=a%40example.com" in message.text

    api_row = await api.get(f"{T}/messages/{ids['First']}", headers=ADMIN)
    assert api_row.json()["status"] == "sent"  # the API's status is unchanged ...
    assert api_row.json()["display_status"] == "bounced"  # ... the display status is added


async def test_search_by_words_and_by_message_id_in_the_page_and_the_api(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    ids = await _tenant_with_mail(api, ctx)
    b = await _signed_in(browser_factory, api, "viewer")
    by_subject = await b.get("/t/acme/logs?q=seco")
    assert ">Second<" in by_subject.text and ">First<" not in by_subject.text
    by_recipient = await b.get("/t/acme/logs?q=A@EXAMPLE")
    assert ">First<" in by_recipient.text and ">Second<" not in by_recipient.text
    wildcard = await b.get("/t/acme/logs?q=%25")
    assert ">First<" not in wildcard.text  # LIKE wildcards are searched as text

    one = (await api.get(f"{T}/messages/{ids['Second']}", headers=ADMIN)).json()
    bare = one["message_id"].strip("<>")
    listed = await api.get(f"{T}/messages", params={"message_id": bare}, headers=ADMIN)
    assert [m["id"] for m in listed.json()["items"]] == [ids["Second"]]
    page = await b.get("/t/acme/logs", params={"message_id": one["message_id"]})
    assert ">Second<" in page.text and ">First<" not in page.text
    words = await api.get(f"{T}/messages", params={"q": "first"}, headers=ADMIN)
    assert [m["id"] for m in words.json()["items"]] == [ids["First"]]
    assert words.json()["items"][0]["display_status"] == "sent"


async def test_the_server_name_is_kept_after_the_server_is_deleted(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    ids = await _tenant_with_mail(api, ctx)
    (server,) = (await api.get(f"{T}/mail-servers", headers=ADMIN)).json()["items"]
    await api.delete(f"{T}/email-accounts/{(await _account(api))['id']}", headers=ADMIN)
    r = await api.delete(f"{T}/mail-servers/{server['id']}", headers=ADMIN)
    assert r.status_code == 204, r.text
    b = await _signed_in(browser_factory, api, "viewer")
    page = await b.get(f"/t/acme/logs/{ids['First']}")
    assert 'Capture <span class="muted">(deleted)</span>' in page.text
    assert server["id"] not in page.text


async def _account(api: httpx.AsyncClient) -> dict[str, Any]:
    items: list[dict[str, Any]] = (await api.get(f"{T}/email-accounts", headers=ADMIN)).json()[
        "items"
    ]
    return items[0]


async def test_logs_tables_scroll_inside_a_region_and_a_new_tenant_gets_a_guide(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    from tests.ui.conftest import add_tenant

    await add_tenant(api, "acme")
    b = await _signed_in(browser_factory, api, "viewer")
    empty = await b.get("/t/acme/logs")
    assert "No message yet." in empty.text and "/t/acme/settings" in empty.text
    filtered = await b.get("/t/acme/logs?q=nothing")
    assert "No message matches." in filtered.text
