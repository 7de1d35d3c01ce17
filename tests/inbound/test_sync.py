"""Manual sync against a real Dovecot: once-only ingestion, UIDVALIDITY, errors, access."""

from __future__ import annotations

import imaplib
import logging
import ssl
from dataclasses import replace

import pytest

from mailgate.storage.inbound import InboundStore
from tests.config.helpers import new_tenant, token_for
from tests.conftest import ADMIN
from tests.inbound.bounces import plain_mail
from tests.inbound.conftest import PASSWORD, Inbox, T
from tests.support.tls import TestCA


def _mail(n: int) -> bytes:
    return plain_mail(f"Message {n}", message_id=f"<m{n}@example.com>")


async def test_sync_ingests_new_messages_once(inbox: Inbox) -> None:
    inbox.server.deliver("alice", _mail(1))
    inbox.server.deliver("alice", _mail(2))

    first = await inbox.sync_ok()
    assert (first["fetched"], first["stored"], first["duplicates"]) == (2, 2, 0)
    assert first["mailbox"] == "INBOX" and not first["uidvalidity_changed"]

    again = await inbox.sync_ok()
    assert (again["fetched"], again["stored"]) == (0, 0)

    inbox.server.deliver("alice", _mail(3))
    third = await inbox.sync_ok()
    assert (third["fetched"], third["stored"]) == (1, 1)

    items = await inbox.items()
    assert [i["subject"] for i in items] == ["Message 3", "Message 2", "Message 1"]
    assert [i["uid"] for i in items] == [3, 2, 1]
    assert {i["uidvalidity"] for i in items} == {first["uidvalidity"]}
    assert items[0]["sender"] == "Carol <carol@example.com>"
    assert items[0]["message_id"] == "<m3@example.com>"
    assert not items[0]["is_bounce"] and items[0]["bounce"] is None

    raw = await inbox.client.get(f"{inbox.url}/inbox/{items[0]['id']}/raw", headers=ADMIN)
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "message/rfc822"
    assert b"Hello from Message 3." in raw.content

    account = await inbox.client.get(inbox.url, headers=ADMIN)
    assert account.json()["last_sync_at"] is not None
    assert account.json()["last_sync_error"] is None


async def test_sync_leaves_the_mailbox_unread(inbox: Inbox, trust_ca: TestCA) -> None:
    inbox.server.deliver("alice", _mail(1))
    assert (await inbox.sync_ok())["stored"] == 1

    context = ssl.create_default_context(cafile=str(trust_ca.ca_file))
    with imaplib.IMAP4_SSL(inbox.server.host, inbox.server.tls_port, ssl_context=context) as imap:
        imap.login("alice", PASSWORD)
        imap.select("INBOX", readonly=True)
        _, flags = imap.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in flags[0]


async def test_starttls_is_used_on_the_plain_port(inbox: Inbox) -> None:
    await inbox.set_imap(port=inbox.server.starttls_port, security="starttls")
    inbox.server.deliver("alice", _mail(1))
    assert (await inbox.sync_ok())["stored"] == 1
    assert "TLS" in inbox.server.log_text()


async def test_uidvalidity_change_rereads_without_duplicates(inbox: Inbox) -> None:
    inbox.server.deliver("alice", _mail(1))
    inbox.server.deliver("alice", _mail(2))
    first = await inbox.sync_ok()
    assert first["stored"] == 2

    inbox.server.set_uidvalidity("alice", first["uidvalidity"] + 1000)
    inbox.server.deliver("alice", _mail(3))
    after = await inbox.sync_ok()
    assert after["uidvalidity"] == first["uidvalidity"] + 1000
    assert after["uidvalidity_changed"]
    assert (after["fetched"], after["stored"], after["duplicates"]) == (3, 1, 2)

    items = await inbox.items()
    assert sorted(i["subject"] for i in items) == ["Message 1", "Message 2", "Message 3"]
    assert (await inbox.sync_ok())["fetched"] == 0


async def test_a_large_message_is_stored_as_its_header(inbox: Inbox) -> None:
    inbox.ctx.policy = replace(inbox.ctx.policy, max_message_bytes=2048)
    big = plain_mail("Big", message_id="<big@example.com>") + b"x" * 4096 + b"\r\n"
    inbox.server.deliver("alice", big)
    assert (await inbox.sync_ok())["stored"] == 1
    [item] = await inbox.items()
    assert item["truncated"] and item["size"] > 4096
    raw = await inbox.client.get(f"{inbox.url}/inbox/{item['id']}/raw", headers=ADMIN)
    assert b"Subject: Big" in raw.content and b"xxxx" not in raw.content


async def test_wrong_password_is_a_clear_error_without_the_password(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng-imap-secret-value"
    await inbox.set_imap(password=wrong)
    caplog.set_level(logging.DEBUG)

    r = await inbox.sync()

    assert r.status_code == 502, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "auth_failed"
    assert "refused the login of 'alice'" in body["detail"]
    assert "app password" in body["hint"]
    assert body["errors"] == [{"field": "imap.password", "message": body["errors"][0]["message"]}]
    error = await inbox.last_sync_error()
    assert error is not None and error.startswith("auth_failed")
    for text in (r.text, error, caplog.text):
        assert wrong not in text and PASSWORD not in text
    account = await inbox.client.get(inbox.url, headers=ADMIN)
    assert account.json()["imap"]["password_set"] is True
    assert wrong not in account.text


async def test_secret_never_logged_on_success(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    inbox.server.deliver("alice", _mail(1))
    r = await inbox.sync()
    assert r.status_code == 200
    assert "LOGIN" in caplog.text  # imapclient's protocol log ran, redacted
    assert PASSWORD not in caplog.text and PASSWORD not in r.text


async def test_untrusted_certificate_is_refused(
    inbox: Inbox, tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = TestCA(inbox.server.dir / "other-ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))
    inbox.server.deliver("alice", _mail(1))

    r = await inbox.sync()

    assert r.status_code == 502, r.text
    assert r.json()["code"] == "certificate_untrusted"
    assert "certificate" in r.json()["detail"]
    assert "Login:" not in inbox.server.log_text()  # no credentials were sent
    assert await inbox.items() == []


async def test_implicit_tls_against_a_plain_port_says_so(inbox: Inbox) -> None:
    await inbox.set_imap(port=inbox.server.starttls_port, security="tls")
    r = await inbox.sync()
    assert r.status_code == 502, r.text
    assert r.json()["code"] == "not_tls"
    assert "starttls" in r.json()["hint"]


async def test_network_policy_refuses_loopback_before_connecting(inbox: Inbox) -> None:
    inbox.ctx.policy = replace(inbox.ctx.policy, allowed_networks=())
    before = inbox.server.log_text().count("imap-login")

    r = await inbox.sync()

    assert r.status_code == 502, r.text
    body = r.json()
    assert body["code"] == "policy_refused"
    assert "MAILGATE_ALLOWED_NETWORKS" in body["hint"]
    assert body["errors"][0]["field"] == "imap.host"
    assert inbox.server.log_text().count("imap-login") == before
    assert (await inbox.last_sync_error() or "").startswith("policy_refused")


async def test_no_inbox_is_a_422_naming_imap(inbox: Inbox) -> None:
    r = await inbox.client.patch(inbox.url, json={"imap": None}, headers=ADMIN)
    assert r.status_code == 200, r.text
    r = await inbox.sync()
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "imap"
    assert "no IMAP inbox" in r.json()["detail"]


async def test_a_running_sync_makes_another_a_409(inbox: Inbox) -> None:
    held = InboundStore(
        inbox.ctx.db, inbox.ctx.box, tenant_id=await _tenant_id(inbox), account_id=inbox.account_id
    )
    target = await held.begin("other-worker")
    assert target is not None and target.password == PASSWORD
    assert PASSWORD not in repr(target)

    r = await inbox.sync()
    assert r.status_code == 409, r.text
    assert "already running" in r.json()["detail"]

    await held.finish("other-worker", error=None)
    assert (await inbox.sync()).status_code == 200


async def _tenant_id(inbox: Inbox) -> str:
    r = await inbox.client.get(T, headers=ADMIN)
    return str(r.json()["id"])


async def test_other_tenants_get_404_and_roles_are_checked(inbox: Inbox) -> None:
    await new_tenant(inbox.client, "rival")
    rival = await token_for(inbox.client, "rival", "owner")
    path = f"/api/v1/tenants/acme/email-accounts/{inbox.account_id}"
    assert (await inbox.client.post(f"{path}/sync", headers=rival)).status_code == 404
    assert (await inbox.client.get(f"{path}/inbox", headers=rival)).status_code == 404
    rival_path = f"/api/v1/tenants/rival/email-accounts/{inbox.account_id}"
    assert (await inbox.client.post(f"{rival_path}/sync", headers=rival)).status_code == 404
    assert (await inbox.client.get(f"{rival_path}/inbox", headers=rival)).status_code == 404

    for role in ("viewer", "developer", "sender"):
        token = await token_for(inbox.client, "acme", role)
        assert (await inbox.client.post(f"{path}/sync", headers=token)).status_code == 403
    admin = await token_for(inbox.client, "acme", "admin")
    assert (await inbox.client.post(f"{path}/sync", headers=admin)).status_code == 200
    viewer = await token_for(inbox.client, "acme", "viewer")
    assert (await inbox.client.get(f"{path}/inbox", headers=viewer)).status_code == 200
    sender = await token_for(inbox.client, "acme", "sender")
    assert (await inbox.client.get(f"{path}/inbox", headers=sender)).status_code == 403


def _deeply_nested(depth: int) -> bytes:
    """A message of ``depth`` nested multiparts: anyone can mail one to the inbox."""
    head = b"From: mallory@example.com\r\nSubject: Nested\r\nMessage-ID: <deep@example.com>\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(depth)
    )
    closing = b"".join(b"--b%d--\r\n" % n for n in reversed(range(depth)))
    return head + b"MIME-Version: 1.0\r\n" + opening + b"\r\nhi\r\n" + closing


async def test_a_deeply_nested_message_is_stored_and_never_blocks_the_inbox(
    inbox: Inbox,
) -> None:
    inbox.server.deliver("alice", _deeply_nested(3000))
    inbox.server.deliver("alice", _mail(2))
    result = await inbox.sync_ok()
    assert (result["fetched"], result["stored"]) == (2, 2)
    items = await inbox.items()
    assert sorted(i["subject"] for i in items) == ["Message 2", "Nested"]
    nested = next(i for i in items if i["subject"] == "Nested")
    assert nested["message_id"] == "<deep@example.com>" and nested["bounce"] is None
