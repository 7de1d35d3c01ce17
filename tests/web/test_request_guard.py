"""Request bodies are capped, and API calls without a credential are refused before their
body is read (a real uvicorn on loopback, bodies written by hand)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mailgate.services.context import Context
from mailgate.settings import Settings
from mailgate.web.app import create_app
from mailgate.web.guard import MIB, RequestLimits, default_request_bytes
from mailgate.web.ui import UiOptions, mount_ui
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.web.live_http import PeakRss, serving, upload

SEND = "/api/v1/tenants/acme/messages"
BIG = 50 * MIB


def _app(ctx: Context, cap: int) -> FastAPI:
    app = create_app(ctx, limits=RequestLimits(max_request_bytes=cap))
    mount_ui(app, ctx, options=UiOptions(secure_cookies=False))
    return app


@pytest.fixture
async def port(ctx: Context) -> AsyncIterator[int]:
    async with serving(_app(ctx, 64 * MIB)) as p:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}") as c:
            acme = {"slug": "acme", "name": "Acme"}
            r = await c.post("/api/v1/tenants", json=acme, headers=ADMIN)
            assert r.status_code == 201, r.text
        yield p


def _problem(body: bytes) -> dict[str, object]:
    found: dict[str, object] = json.loads(body)
    return found


async def test_a_call_without_a_token_is_refused_before_its_body_is_sent(port: int) -> None:
    # The body trickles in (64 KiB every 50 ms): the answer must not wait for it.
    r = await upload(port, SEND, size=20 * MIB, chunk=64 * 1024, pause=0.05)
    assert r.status == 401, (r.head, r.error)
    assert r.sent_at_answer < 2 * MIB
    problem = _problem(r.body)
    assert problem["title"] == "Unauthenticated"
    assert problem["detail"] == "Send an API token: `Authorization: Bearer <token>`."
    assert "application/problem+json" in r.head
    assert "connection: close" in r.head.lower()  # the rest of the body is not read


async def test_an_unknown_token_or_another_scheme_is_refused_as_the_route_would(
    port: int,
) -> None:
    # Written as fast as the socket takes it: kernel buffers hold a few MiB, the server none.
    bad = await upload(port, SEND, size=20 * MIB, headers={"Authorization": "Bearer mg_nope"})
    assert bad.status == 401 and bad.sent_at_answer < 10 * MIB
    assert _problem(bad.body)["detail"] == "The API token is not valid (revoked or mistyped)."
    basic = await upload(port, SEND, size=20 * MIB, headers={"Authorization": "Basic eDp5"})
    assert basic.status == 401 and basic.sent_at_answer < 10 * MIB
    assert _problem(basic.body)["detail"].startswith("Send an API token")  # type: ignore[union-attr]
    # A tampered UI session cookie is no credential either.
    cookie = await upload(port, SEND, size=20 * MIB, headers={"Cookie": "mailgate_session=xyz"})
    assert cookie.status == 401 and cookie.sent_at_answer < 10 * MIB


async def test_four_unauthenticated_large_posts_do_not_grow_memory(port: int) -> None:
    with PeakRss() as rss:
        results = await asyncio.gather(*(upload(port, SEND, size=BIG) for _ in range(4)))
    for r in results:
        assert r.status == 401, (r.head, r.error)
        assert r.sent_at_answer < 20 * MIB
    assert rss.growth < 30 * MIB, f"resident memory grew by {rss.growth / MIB:.0f} MiB"


async def test_a_declared_length_over_the_cap_is_refused_before_the_body(ctx: Context) -> None:
    async with serving(_app(ctx, 4 * MIB)) as p:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        r = await upload(p, SEND, size=BIG, headers=auth, pause=0.05)
        assert r.status == 413, (r.head, r.error)
        assert r.sent_at_answer < 2 * MIB
        problem = _problem(r.body)
        assert problem["title"] == "Payload too large"
        assert problem["detail"] == f"The request body is larger than {4 * MIB} bytes."


async def test_a_chunked_body_is_cut_off_at_the_cap_with_bounded_memory(ctx: Context) -> None:
    async with serving(_app(ctx, 4 * MIB)) as p:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with PeakRss() as rss:
            results = await asyncio.gather(
                *(upload(p, SEND, size=BIG, headers=auth, chunked=True) for _ in range(4))
            )
        for r in results:
            assert r.status == 413, (r.head, r.error)
            assert r.sent_at_answer < 20 * MIB
        assert rss.growth < 40 * MIB, f"resident memory grew by {rss.growth / MIB:.0f} MiB"


async def test_keystore_uploads_and_ui_forms_have_a_small_cap(ctx: Context) -> None:
    async with serving(_app(ctx, 64 * MIB)) as p:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        store = await upload(p, "/api/v1/tenants/acme/keystores", size=2 * MIB, headers=auth)
        assert store.status == 413, (store.head, store.error)
        form = await upload(
            p,
            "/login",
            size=2 * MIB,
            chunked=True,
            content_type="application/x-www-form-urlencoded",
        )
        assert form.status == 413, (form.head, form.error)


async def test_an_authenticated_call_within_the_cap_reaches_the_route(port: int) -> None:
    # The guard's principal is reused by the route: the answer is the route's own.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        r = await c.post(SEND, json={"to": []}, headers=ADMIN)
        assert r.status_code in (403, 422), r.text
        assert (await c.get("/api/v1/tenants/acme", headers=ADMIN)).status_code == 200
        anonymous = await c.get("/api/v1/tenants/acme")
        assert anonymous.status_code == 401
        assert anonymous.headers.get("connection") != "close"  # no body: keep-alive holds
        assert (await c.get("/api/v1/providers")).status_code == 401
        assert (await c.get("/api/v1/providers", headers=ADMIN)).status_code == 200
        # An unknown path is still 404, not 401.
        assert (await c.post("/api/v1/nowhere", content=b"{}")).status_code == 404


def test_the_default_cap_fits_one_message_of_the_largest_size() -> None:
    settings = Settings(max_message_bytes=25 * MIB)
    limits = RequestLimits.from_settings(settings)
    assert limits.max_request_bytes == default_request_bytes(25 * MIB)
    assert 25 * MIB * 4 // 3 < limits.max_request_bytes < 35 * MIB
    chosen = RequestLimits.from_settings(Settings(max_request_bytes=2 * MIB))
    assert chosen.max_request_bytes == 2 * MIB
    assert chosen.cap("POST", "/api/v1/tenants/a/messages") == 2 * MIB
    assert chosen.cap("POST", "/api/v1/tenants/a/keystores") == MIB
    assert chosen.cap("POST", "/login") == MIB


async def test_a_signed_out_ui_session_cookie_is_refused_before_the_body(ctx: Context) -> None:
    from mailgate.services import ui_sessions
    from mailgate.web.ui.session import Session

    app = _app(ctx, 64 * MIB)
    session_id = await ui_sessions.open_session(ctx, kind="admin", hours=1)
    signed_in = Session.anonymous().signed_in_as(
        admin_token=ADMIN_TOKEN, admin_actor="instance-admin", session_id=session_id
    )
    cookie = {"Cookie": f"mailgate_session={app.state.mailgate_ui.codec.seal(signed_in)}"}
    async with serving(app) as p:
        # Signed in, the body is read (and refused by the route: it is no JSON).
        live = await upload(p, SEND, size=2 * MIB, headers=cookie)
        assert live.status == 400 and live.sent_at_answer == 2 * MIB
        await ui_sessions.end_session(ctx, session_id)
        ended = await upload(p, SEND, size=20 * MIB, headers=cookie, pause=0.05)
        assert ended.status == 401 and ended.sent_at_answer < 2 * MIB
        detail = _problem(ended.body)["detail"]
        assert detail == "Send an API token: `Authorization: Bearer <token>`."


async def test_a_client_waiting_for_100_continue_is_refused_without_continue(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"POST {SEND} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {20 * MIB}\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    elapsed = time.monotonic() - started
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:80]
    assert b"100 Continue" not in answer
    assert elapsed < 1.0  # closed at once: no body is coming, so none is waited for
