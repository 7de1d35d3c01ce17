"""Canary secrets: never in an API response, the audit log, the logs or the database dump."""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path

import httpx
import pytest

from mailgate.services.context import Context
from tests.config.helpers import new_tenant
from tests.conftest import ADMIN


def _forms(value: str) -> list[bytes]:
    raw = value.encode()
    forms = [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode()]
    # Any 3-byte-aligned window of the base64 encoding also betrays the value.
    forms += [base64.b64encode(raw[i:]).rstrip(b"=")[:16] for i in range(3)]
    return forms


async def _database_dump(ctx: Context, tmp_path: Path) -> bytes:
    if ctx.db.dialect == "sqlite":
        await ctx.db.dispose()  # checkpoint and close, so the file holds everything
        files = [p for p in tmp_path.iterdir() if p.name.startswith("mailgate.db")]
        return b"".join(p.read_bytes() for p in files)
    chunks: list[bytes] = []
    async with ctx.db.read() as tx:
        from mailgate.storage.tables import metadata

        for table in metadata.sorted_tables:
            result = await tx.exec_driver_sql(f"SELECT * FROM {table.name}")
            for row in result:
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


async def test_canaries_never_leak(
    client: httpx.AsyncClient,
    ctx: Context,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    canaries = {
        name: f"canary-{name}-{secrets.token_hex(12)}"
        for name in (
            "password",
            "password2",
            "api_key",
            "client_secret",
            "service_account",
            "imap",
            "user_pw",
        )
    }
    responses: list[httpx.Response] = []

    async def call(method: str, url: str, **kw: object) -> httpx.Response:
        r = await client.request(method, url, headers=ADMIN, **kw)  # type: ignore[arg-type]
        responses.append(r)
        return r

    await new_tenant(client)
    base = "/api/v1/tenants/acme"
    smtp = await call(
        "POST",
        f"{base}/mail-servers",
        json={
            "name": "SMTP",
            "host": "smtp.example.com",
            "auth": "password",
            "username": "u@example.com",
            "password": canaries["password"],
        },
    )
    assert smtp.status_code == 201
    sid = smtp.json()["id"]
    await call(
        "PATCH",
        f"{base}/mail-servers/{sid}",
        json={"host": "smtp2.example.com", "password": canaries["password2"]},
    )
    await call("PATCH", f"{base}/mail-servers/{sid}", json={"host": "smtp3.example.com"})  # 422
    await call(
        "POST",
        f"{base}/mail-servers",
        json={"name": "SG", "engine": "sendgrid", "api_key": canaries["api_key"]},
    )
    await call(
        "POST",
        f"{base}/mail-servers",
        json={
            "name": "Google",
            "host": "smtp.gmail.com",
            "auth": "xoauth2",
            "username": "a@gmail.com",
            "oauth": {"provider": "google", "service_account_json": canaries["service_account"]},
        },
    )
    await call(
        "POST",
        f"{base}/mail-servers",
        json={
            "name": "Graph",
            "engine": "msgraph",
            "sender_upn": "m@acme.example",
            "oauth": {
                "provider": "microsoft",
                "client_id": "c",
                "tenant_id": "t",
                "client_secret": canaries["client_secret"],
            },
        },
    )
    await call(
        "POST",
        f"{base}/email-accounts",
        json={
            "address": "ops@acme.example",
            "display_name": "Ops",
            "mail_server_id": sid,
            "imap": {"host": "imap.example.com", "username": "ops", "password": canaries["imap"]},
        },
    )
    await call(
        "POST",
        f"{base}/users",
        json={"email": "ann@acme.example", "password": canaries["user_pw"], "role": "admin"},
    )
    for path in ("mail-servers", "email-accounts", "users", "audit", "tokens", "stages"):
        await call("GET", f"{base}/{path}")
    await call("GET", f"{base}/mail-servers/{sid}")
    await call("GET", "/openapi.json")
    assert {r.status_code for r in responses} <= {200, 201, 422}
    audit = (await client.get(f"{base}/audit", headers=ADMIN)).json()["items"]
    assert any("password" in e["changes"] for e in audit)  # the field name is recorded ...

    haystacks = {
        "responses": b"\n".join(r.content for r in responses),
        "logs": caplog.text.encode(),
        "database": await _database_dump(ctx, tmp_path),
    }
    # Positive control: the dump does hold the servers' plain fields.
    assert b"u@example.com" in haystacks["database"]
    assert b"imap.example.com" in haystacks["database"]
    for where, data in haystacks.items():
        for name, value in canaries.items():
            for form in _forms(value):
                assert form not in data, f"{name} leaked into {where} as {form!r}"
