"""An inbox on Dovecot (implicit TLS) whose certificate is trusted only through the ``ca``
keystore the account names (``imap.ca_keystore``): sync, the inbox test, and a replaced
keystore content taking effect at the next connection."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import ADMIN
from tests.inbound.bounces import plain_mail
from tests.inbound.conftest import Inbox, T
from tests.support.tls import TestCA


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


async def test_sync_trusts_the_named_keystore_and_reads_it_at_each_connection(
    inbox: Inbox, ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The system trust store knows another CA only: Dovecot's certificate is not trusted.
    other = TestCA(inbox.server.dir / "other-ca", name="Another CA")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))
    inbox.server.deliver("alice", plain_mail("Via the keystore", message_id="<k1@example.com>"))
    r = await inbox.sync()
    assert r.status_code == 502 and r.json()["code"] == "certificate_untrusted", r.text

    store = await inbox.client.post(
        f"{T}/keystores",
        json={"name": "imap-ca", "kind": "ca", "content": _b64(ca.ca_pem)},
        headers=ADMIN,
    )
    assert store.status_code == 201, store.text
    await inbox.set_imap(ca_keystore="imap-ca")
    assert (await inbox.sync_ok())["stored"] == 1
    test = await inbox.client.post(f"{inbox.url}/test-inbox", headers=ADMIN)
    assert test.status_code == 200 and test.json()["ok"] is True, test.text

    # The keystore now holds the wrong CA: the next connection refuses the certificate.
    r = await inbox.client.patch(
        f"{T}/keystores/{store.json()['id']}", json={"content": _b64(other.ca_pem)}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    logins = inbox.server.log_text().count("Login:")
    r = await inbox.sync()
    assert r.status_code == 502 and r.json()["code"] == "certificate_untrusted", r.text
    assert inbox.server.log_text().count("Login:") == logins  # no credentials were sent
    test = await inbox.client.post(f"{inbox.url}/test-inbox", headers=ADMIN)
    assert test.json()["ok"] is False
    assert test.json()["error"]["code"] == "certificate_untrusted"
