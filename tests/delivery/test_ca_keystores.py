"""Servers that trust a private CA through a ``ca`` keystore they name (``ca_keystore``):
delivery over STARTTLS to aiosmtpd on loopback, verified only through the keystore."""

from __future__ import annotations

import base64
import gc
import warnings
from pathlib import Path

from mailgate.engines.factory import EngineCache
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain, make_due
from tests.support.smtp_servers import AiosmtpdServer
from tests.support.tls import TestCA


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


async def _keystore(tenant: Tenant, name: str, pem: str) -> dict[str, str]:
    r = await tenant.client.post(
        f"{T}/keystores", json={"name": name, "kind": "ca", "content": _b64(pem)}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _collect() -> None:
    # aiosmtpd leaves the server side of STARTTLS sessions to the garbage collector.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def test_two_servers_trust_one_keystore_and_a_replaced_ca_is_used_at_once(
    tenant: Tenant, engines: EngineCache, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    other = TestCA(tmp_path / "other", name="Another CA")
    cert = ca.issue("mail.mailgate.test")
    store = await _keystore(tenant, "corp-ca", ca.ca_pem)
    async with (
        AiosmtpdServer(mode="starttls", cert=cert) as first,
        AiosmtpdServer(mode="starttls", cert=cert) as second,
    ):
        common = {"host": "mail.mailgate.test", "security": "starttls", "ca_keystore": "corp-ca"}
        one = await tenant.server(first.port, name="one", **common)
        await tenant.server(second.port, name="two", stages=["test"], is_default=False, **common)
        assert one["ca_keystore"] == "corp-ca" and one["ca_certificates"] is None
        sent = await tenant.send_ok(stage="production")
        via_two = await tenant.send_ok(stage="test")
        await drain(tenant.ctx, engines=engines)
        assert (await tenant.message(sent))["status"] == "sent"
        assert (await tenant.message(via_two))["status"] == "sent"
        assert len(first.messages) == 1 and len(second.messages) == 1

        # The keystore now holds a CA that did not issue the servers' certificate: every
        # server naming it stops trusting them, with no edit of the servers.
        r = await tenant.client.patch(
            f"{T}/keystores/{store['id']}", json={"content": _b64(other.ca_pem)}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        assert r.json()["aliases"][0]["alias"] == "Another CA"
        refused = await tenant.send_ok(stage="production")
        await drain(tenant.ctx, engines=engines)
        message = await tenant.message(refused)
        assert message["status"] == "deferred"
        assert len(first.messages) == 1

        # And back: the right CA again delivers the waiting message.
        r = await tenant.client.patch(
            f"{T}/keystores/{store['id']}", json={"content": _b64(ca.ca_pem)}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        await make_due(tenant.ctx)
        await drain(tenant.ctx, engines=engines)
        assert (await tenant.message(refused))["status"] == "sent"
        assert len(first.messages) == 2
        await engines.aclose()
    _collect()


async def test_without_the_keystore_the_private_ca_is_not_trusted(
    tenant: Tenant, engines: EngineCache, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    cert = ca.issue("mail.mailgate.test")
    async with AiosmtpdServer(mode="starttls", cert=cert) as smtp:
        await tenant.server(smtp.port, host="mail.mailgate.test", security="starttls")
        refused = await tenant.send_ok(stage="production")
        await drain(tenant.ctx, engines=engines)
        message = await tenant.message(refused)
        assert message["status"] == "deferred"
        assert smtp.messages == []
        await engines.aclose()
    _collect()
