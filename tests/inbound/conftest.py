"""Fixtures for inbound tests: a private Dovecot, a test CA and a tenant with an IMAP inbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mailgate.runtime import Context
from mailgate.storage.tables import email_accounts
from tests.config.helpers import new_tenant
from tests.conftest import ADMIN
from tests.inbound.dovecot import Dovecot, doveadm_binary, dovecot_binary
from tests.support.tls import TestCA

T = "/api/v1/tenants/acme"
PASSWORD = "imap-Pa55word-" + os.urandom(6).hex()

needs_dovecot = pytest.mark.skipif(
    dovecot_binary() is None or doveadm_binary() is None,
    reason="Dovecot is not installed: run `bash scripts/install_dovecot.sh` (as root)",
)


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
def trust_ca(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> TestCA:
    """Trust the test CA the way an operator trusts a private CA: the system trust file."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    return ca


@pytest.fixture
def dovecot(ca: TestCA) -> Iterator[Dovecot]:
    if dovecot_binary() is None or doveadm_binary() is None:
        pytest.skip("Dovecot is not installed: run `bash scripts/install_dovecot.sh` (as root)")
    server = Dovecot(
        cert=ca.issue("127.0.0.1"),
        sni_cert=ca.issue("imap.mailgate.test"),
        users={"alice": PASSWORD, "bob": PASSWORD + "-bob"},
    )
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Inbox:
    """A tenant ``acme`` with a capture server and an account whose inbox is on Dovecot."""

    client: httpx.AsyncClient
    ctx: Context
    server: Dovecot
    account_id: str
    address: str = "noreply@acme.example"

    @property
    def url(self) -> str:
        return f"{T}/email-accounts/{self.account_id}"

    async def sync(self, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(f"{self.url}/sync", headers=headers or ADMIN)

    async def sync_ok(self) -> dict[str, Any]:
        r = await self.sync()
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def items(self, **params: Any) -> list[dict[str, Any]]:
        r = await self.client.get(f"{self.url}/inbox", params=params, headers=ADMIN)
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def set_imap(self, **imap: Any) -> None:
        body = {
            "host": self.server.host,
            "port": self.server.tls_port,
            "security": "tls",
            "username": "alice",
            "password": PASSWORD,
            **imap,
        }
        r = await self.client.patch(self.url, json={"imap": body}, headers=ADMIN)
        assert r.status_code == 200, r.text

    async def last_sync_error(self) -> str | None:
        async with self.ctx.db.read() as tx:
            value = (
                await tx.execute(
                    select(email_accounts.c.last_sync_error).where(
                        email_accounts.c.id == self.account_id
                    )
                )
            ).scalar_one()
        return str(value) if value is not None else None


@pytest.fixture
async def inbox(
    client: httpx.AsyncClient, ctx: Context, dovecot: Dovecot, trust_ca: TestCA
) -> Inbox:
    await new_tenant(client)
    capture = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    assert capture.status_code == 201, capture.text
    r = await client.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@acme.example",
            "display_name": "Acme",
            "mail_server_id": capture.json()["id"],
            "is_default": True,
            "imap": {
                "host": dovecot.host,
                "port": dovecot.tls_port,
                "security": "tls",
                "username": "alice",
                "password": PASSWORD,
            },
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    # Dovecot listens on loopback, which the network policy refuses unless allowed.
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.1/32",))
    return Inbox(client, ctx, dovecot, r.json()["id"])
