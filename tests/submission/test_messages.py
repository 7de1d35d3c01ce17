"""Messages over SMTP submission: stored, routed, redirected and delivered like API mail."""

from __future__ import annotations

import asyncio
import email
import smtplib
from dataclasses import replace
from email import policy
from email.message import EmailMessage

import aiosmtplib
import pytest

from mailgate.submission import SubmissionServer
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain
from tests.support.smtp_servers import RawSmtpServer

from .conftest import (
    LOCAL,
    SENDER,
    SLUG,
    Serve,
    client,
    message,
    message_count,
    new_token,
    queued_id,
    raw_of,
    raw_send,
    send,
    token_of,
    unfolded_head,
)


async def test_accepted_message_is_stored_with_envelope_recipients_and_delivered(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    data = message(
        to="Ann <a@example.com>",
        extra="Cc: c@example.com\r\nBcc: hidden@example.com\r\nX-Campaign: 7\r\n",
    )
    rcpts = ["a@example.com", "c@example.com", "d@example.com"]
    reply = await send(plain.port, data, token=token_of(tenant), rcpts=rcpts)
    message_id = queued_id(reply)
    stored = await tenant.message(message_id)
    assert stored["status"] == "queued"
    assert stored["message_id"] == "<inv-7@app.acme.example>"  # the application's own
    assert [r["email"] for r in stored["recipients"]] == rcpts
    assert stored["redirected"] is False
    raw = await raw_of(tenant, message_id)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    head = unfolded_head(raw)
    assert head[0].startswith("Received: from app.acme.test ([127.0.0.1])")
    names = [line.split(":", 1)[0] for line in head]
    assert "Bcc" not in names and b"hidden@example.com" not in raw
    assert b"d@example.com" not in raw  # a Bcc recipient only ever is in the envelope
    # Everything else is the application's, octet for octet.
    assert raw.endswith(data[data.index(b"From:") :].replace(b"Bcc: hidden@example.com\r\n", b""))
    await drain(tenant.ctx)
    delivered = await tenant.message(message_id)
    assert delivered["status"] == "sent"
    assert [r["status"] for r in delivered["recipients"]] == ["sent"] * 3
    [attempt] = delivered["attempts"]
    assert attempt["engine"] == "capture" and attempt["code"] == 250


async def test_missing_date_and_message_id_are_added_and_the_account_reply_to(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    r = await tenant.client.get(f"{T}/email-accounts", headers=ADMIN)
    [account] = r.json()["items"]
    r = await tenant.client.patch(
        f"{T}/email-accounts/{account['id']}",
        json={"reply_to": "help@acme.example"},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    data = f"From: {SENDER}\r\nTo: a@example.com\r\nSubject: Hi\r\n\r\nHello.\r\n".encode()
    message_id = queued_id(await send(plain.port, data, token=token_of(tenant)))
    stored = await tenant.message(message_id)
    parsed = email.message_from_bytes(await raw_of(tenant, message_id), policy=policy.default)
    assert parsed["Message-ID"] == stored["message_id"]
    assert stored["message_id"].endswith("@acme.example>")
    assert parsed["Date"] is not None and parsed["Date"].datetime is not None
    assert parsed["Reply-To"] == "help@acme.example"


async def test_python_smtplib_send_message_with_an_8bit_body(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    composed = EmailMessage()
    composed["From"] = f"Acme Fakturering <{SENDER}>"
    composed["To"] = "Åsa <asa@example.com>"
    composed["Subject"] = "Faktura för mars"
    composed.set_content("Hej Åsa,\nhär är din faktura.\n")
    composed.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="f.pdf")
    token = token_of(tenant)

    def submit() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(LOCAL, plain.port, timeout=10) as smtp:
            smtp.login(SLUG, token)
            return smtp.send_message(composed)

    refused = await asyncio.to_thread(submit)
    assert refused == {}
    r = await tenant.client.get(f"{T}/messages", headers=ADMIN)
    [item] = r.json()["items"]
    assert item["subject"] == "Faktura för mars"
    parsed = email.message_from_bytes(await raw_of(tenant, item["id"]), policy=policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None and "här är din faktura" in body.get_content()
    [attachment] = parsed.iter_attachments()
    assert attachment.get_content() == b"%PDF-1.4"


# -- routing: apps, stages, test lists -----------------------------------------------------


async def _activate_test_list(tenant: Tenant) -> None:
    r = await tenant.client.put(
        f"{T}/apps/billing/test-list",
        json={"addresses": ["qa1@test.example", "qa2@test.example"], "active": True},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text


def _rcpt_lines(raw: bytes) -> list[bytes]:
    return sorted(line for line in raw.split(b"\r\n") if line.upper().startswith(b"RCPT TO"))


async def test_test_list_replaces_envelope_and_to_cc_on_the_wire(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    await _activate_test_list(tenant)
    data = message(
        to="Customer <real.customer@example.com>",
        extra=(
            "Cc: boss@example.com\r\nX-Mailgate-App: billing\r\nX-Mailgate-Stage: development\r\n"
        ),
    )
    rcpts = ["real.customer@example.com", "boss@example.com", "secret@example.com"]
    async with RawSmtpServer.scripted() as wire:
        await tenant.server(wire.port, stages=["development"])
        reply = await send(plain.port, data, token=token_of(tenant), rcpts=rcpts)
        message_id = queued_id(reply)
        await drain(tenant.ctx)
    assert _rcpt_lines(wire.received) == [
        b"RCPT TO:<qa1@test.example>",
        b"RCPT TO:<qa2@test.example>",
    ]
    [content] = wire.contents
    for real in (b"real.customer@example.com", b"boss@example.com", b"secret@example.com"):
        assert real not in wire.received.replace(content, b"")  # never in the envelope
    parsed = email.message_from_bytes(content[: -len(b".\r\n")], policy=policy.default)
    assert parsed["To"] == "qa1@test.example, qa2@test.example"
    assert parsed["Cc"] is None
    original = parsed["X-Mailgate-Original-Recipients"]
    assert "real.customer@example.com" in original and "boss@example.com" in original
    assert "secret@example.com" not in original and "secret@example.com" not in str(parsed)
    assert parsed["X-Mailgate-App"] is None and parsed["X-Mailgate-Stage"] is None
    stored = await tenant.message(message_id)
    assert stored["status"] == "sent"
    assert stored["redirected"] is True
    assert stored["stage"] == "development"
    assert stored["original_recipients"] == {
        "to": ["real.customer@example.com"],
        "cc": ["boss@example.com"],
        "bcc": ["secret@example.com"],
    }
    assert [r["email"] for r in stored["recipients"]] == ["qa1@test.example", "qa2@test.example"]


async def test_production_mail_of_an_app_with_a_development_list_is_not_redirected(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    await _activate_test_list(tenant)  # every stage but production
    data = message(
        to="Customer <real.customer@example.com>",
        extra="X-Mailgate-App: billing\r\nX-Mailgate-Stage: production\r\n",
    )
    async with RawSmtpServer.scripted() as wire:
        await tenant.server(wire.port)  # the production stage's server
        reply = await send(
            plain.port, data, token=token_of(tenant), rcpts=["real.customer@example.com"]
        )
        await drain(tenant.ctx)
    assert _rcpt_lines(wire.received) == [b"RCPT TO:<real.customer@example.com>"]
    stored = await tenant.message(queued_id(reply))
    assert stored["redirected"] is False and stored["stage"] == "production"


async def test_an_app_bound_token_binds_the_app(tenant: Tenant, plain: SubmissionServer) -> None:
    await _activate_test_list(tenant)
    bound = await new_token(tenant.client, "sender", app="billing")
    reply = await send(plain.port, message(), token=bound)
    stored = await tenant.message(queued_id(reply))
    assert stored["redirected"] is True  # billing's test list, without any header
    r = await tenant.client.post(f"{T}/apps", json={"name": "crm"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(plain.port, message(extra="X-Mailgate-App: crm\r\n"), token=bound)
    assert refused.value.code == 550
    assert "X-Mailgate-App: this token may only send for app 'billing'" in refused.value.message


@pytest.mark.parametrize(
    ("extra", "sender", "expected"),
    [
        ("", "stranger@acme.example", "sender: stranger@acme.example is not an email account"),
        ("X-Mailgate-App: nope\r\n", SENDER, "X-Mailgate-App: no app named 'nope'"),
        ("X-Mailgate-Stage: staging\r\n", SENDER, "X-Mailgate-Stage: no stage named 'staging'"),
    ],
)
async def test_sender_app_and_stage_are_checked(
    tenant: Tenant, plain: SubmissionServer, extra: str, sender: str, expected: str
) -> None:
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(plain.port, message(extra=extra, sender=sender), token=token_of(tenant))
    assert refused.value.code == 550
    assert "5.7.1" in refused.value.message and expected in refused.value.message
    assert await message_count(tenant) == 0


# -- strict parsing ----------------------------------------------------------------------

_OK = f"From: {SENDER}\r\nTo: a@example.com\r\nSubject: Hi\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # A bare LF inside a header: the classic injection of a second field.
        ((_OK + "X-Note: hi\nBcc: x@evil.example\r\n\r\nbody\r\n"), "line 4: holds a bare LF"),
        ((_OK + "X-Note: hi\rBcc: x@evil.example\r\n\r\nbody\r\n"), "line 4: holds a bare CR"),
        (
            f"From: {SENDER}\r\nTo: a@example.com\r\n"
            "Subject: =?utf-8?q?Hi=0D=0ABcc:_x@evil.example?=\r\n\r\nbody\r\n",
            "Subject: must not contain RFC 2047 encoded-words",
        ),
        (_OK + "X-Note: a\x00b\r\n\r\nbody\r\n", "line 4: holds a NUL octet"),
        (_OK + "\r\nline one\nline two\r\n", "line 5: holds a bare LF"),
        (_OK + "X-Mailgate-Original-Recipients: x@evil.example\r\n\r\nb\r\n", "is set by Mailgate"),
        (_OK + "Not a header line\r\n\r\nbody\r\n", "line 4: is not a header field"),
        (_OK.replace("To: a@example.com", "To: a@example.com (Ann)") + "\r\nb\r\n", "To[0]:"),
        (_OK.replace("To: a@example.com", "To: a@@example.com") + "\r\nb\r\n", "To[0]:"),
        (_OK + "Subject: again\r\n\r\nb\r\n", "Subject: appears 2 times"),
        (_OK + "Sender: other@acme.example\r\n\r\nb\r\n", "Sender: is refused"),
        (_OK + "Message-ID: not-an-id\r\n\r\nb\r\n", "Message-ID: is not an RFC 5322 msg-id"),
        (_OK + "\r\nh\u00e9\r\n", "message: holds 8-bit octets"),
        (
            _OK + "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nhi\r\n",
            "message: is a multipart without its closing boundary",
        ),
        (_OK + "X-Long: " + "x" * 991 + "\r\n\r\nb\r\n", "line 4: is longer than 998 octets"),
        ("To: a@example.com\r\nSubject: Hi\r\n\r\nb\r\n", "From: is required"),
    ],
)
async def test_malformed_messages_are_refused_naming_the_problem(
    tenant: Tenant, plain: SubmissionServer, data: str, expected: str
) -> None:
    reply = await raw_send(plain.port, data.encode(), token=token_of(tenant))
    assert reply.startswith("554 5.6.0 ")
    assert expected in reply
    assert await message_count(tenant) == 0


async def test_every_problem_gets_a_line_of_its_own(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    data = _OK + "Sender: x@acme.example\r\nX-Mailgate-Foo: 1\r\nDate: yesterday\r\n\r\nb\r\n"
    async with client(plain.port) as smtp:
        await smtp.login(SLUG, token_of(tenant))
        await smtp.mail(SENDER)
        await smtp.rcpt("a@example.com")
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.data(data.encode())
    lines = refused.value.message.split("\n")
    assert [line.split(":", 1)[0] for line in lines] == [
        "5.6.0 Sender",
        "5.6.0 X-Mailgate-Foo",
        "5.6.0 Date",
    ]


@pytest.mark.parametrize(
    ("command", "address", "code"),
    [
        ("mail", '"john doe"@example.com', 553),
        ("rcpt", '"john doe"@example.com', 553),
        ("rcpt", "a@example", 553),
    ],
)
async def test_envelope_addresses_are_parsed_strictly(
    tenant: Tenant, plain: SubmissionServer, command: str, address: str, code: int
) -> None:
    async with client(plain.port) as smtp:
        await smtp.login(SLUG, token_of(tenant))
        if command == "rcpt":
            await smtp.mail(SENDER)
        refused = await smtp.execute_command(
            b"MAIL" if command == "mail" else b"RCPT",
            (b"FROM:<" if command == "mail" else b"TO:<") + address.encode() + b">",
        )
    assert refused.code == code
    assert ("5.1.7" if command == "mail" else "5.1.3") in refused.message


# -- limits ------------------------------------------------------------------------------


async def test_size_is_announced_and_enforced_with_552(tenant: Tenant, serve: Serve) -> None:
    tenant.ctx.policy = replace(tenant.ctx.policy, max_message_bytes=4096)
    async with serve() as server, client(server.port) as smtp:
        await smtp.login(SLUG, token_of(tenant))
        assert smtp.esmtp_extensions["size"] == "4096"
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as announced:
            await smtp.mail(SENDER, options=["SIZE=5000"])
        assert announced.value.code == 552
        await smtp.rset()
        await smtp.mail(SENDER)
        await smtp.rcpt("a@example.com")
        with pytest.raises(aiosmtplib.SMTPDataError) as sent:
            await smtp.data(message(body=("x" * 70 + "\r\n") * 60))
        assert sent.value.code == 552
        # The connection stays usable for a message that fits.
        _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
    assert queued_id(reply)
    assert await message_count(tenant) == 1


async def test_too_many_recipients_get_452_and_the_rest_is_sent(
    tenant: Tenant, serve: Serve
) -> None:
    tenant.ctx.policy = replace(tenant.ctx.policy, max_recipients=2)
    rcpts = ["a@example.com", "b@example.com", "c@example.com"]
    async with serve() as server, client(server.port) as smtp:
        await smtp.login(SLUG, token_of(tenant))
        refused, reply = await smtp.sendmail(SENDER, rcpts, message())
    assert list(refused) == ["c@example.com"]
    assert refused["c@example.com"].code == 452
    assert "4.5.3" in refused["c@example.com"].message
    stored = await tenant.message(queued_id(reply))
    assert [r["email"] for r in stored["recipients"]] == rcpts[:2]


# -- transient failures ------------------------------------------------------------------


async def test_a_failing_database_gets_451_and_nothing_is_queued(
    tenant: Tenant, plain: SubmissionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from mailgate.services import send as send_service

    async def locked(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("mailgate.services.submit_raw.commit", locked)
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(plain.port, message(), token=token_of(tenant))
    assert refused.value.code == 451
    assert "4.3.0" in refused.value.message and "locked" not in refused.value.message
    monkeypatch.setattr("mailgate.services.submit_raw.commit", send_service.commit)
    assert queued_id(await send(plain.port, message(), token=token_of(tenant)))
    assert await message_count(tenant) == 1


# -- signing -----------------------------------------------------------------------------


async def test_submitted_mail_is_dkim_signed_like_api_mail(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    from mailgate.services import routing_snapshot
    from tests.delivery.test_signing import dkim_verifies, unstuff

    routing_snapshot.clear_caches()
    r = await tenant.client.post(
        f"{T}/dkim-keys",
        json={"domain": "acme.example", "selector": "s1", "algorithm": "ed25519"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    record = r.json()["dns_record"]
    data = message(extra="X-Mailgate-Stage: production\r\n", body="Hello.\r\n.leading dot\r\n")
    async with RawSmtpServer.scripted() as wire:
        await tenant.server(wire.port)
        message_id = queued_id(await send(plain.port, data, token=token_of(tenant)))
        await drain(tenant.ctx)
    assert (await tenant.message(message_id))["status"] == "sent"
    received = unstuff(wire.contents[0])
    assert received.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256")
    assert received.endswith(b"\r\n\r\nHello.\r\n.leading dot\r\n")
    assert dkim_verifies(received, record)
    assert not dkim_verifies(received.replace(b"Hello.", b"Hallo."), record)


async def test_a_large_message_is_accepted_intact(tenant: Tenant, plain: SubmissionServer) -> None:
    # Large messages are checked and signed in a worker thread (THREAD_MIN_BYTES).
    payload = bytes(range(256)) * 2048  # 512 KiB, base64 on the wire
    composed = EmailMessage()
    composed["From"] = SENDER
    composed["To"] = "a@example.com"
    composed["Subject"] = "Archive"
    composed.set_content("See the attachment.\n")
    composed.add_attachment(payload, maintype="application", subtype="octet-stream")
    async with client(plain.port) as smtp:
        await smtp.login(SLUG, token_of(tenant))
        _errors, reply = await smtp.send_message(composed)
    raw = await raw_of(tenant, queued_id(reply))
    assert len(raw) > 600_000
    parsed = email.message_from_bytes(raw, policy=policy.default)
    [attachment] = parsed.iter_attachments()
    assert attachment.get_content() == payload


async def test_internationalised_addresses_need_smtputf8_downstream(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    data = message(to="Jörg <jörg@bücher.example>").replace(b"charset=us-ascii", b"charset=utf-8")
    async with client(plain.port) as smtp:
        await smtp.login(SLUG, token_of(tenant))
        assert smtp.supports_extension("smtputf8")
        _errors, reply = await smtp.sendmail(
            SENDER, ["jörg@bücher.example"], data, mail_options=["SMTPUTF8"]
        )
    stored = await tenant.message(queued_id(reply))
    # A non-ASCII local part has no ASCII form: the address travels as UTF-8 (RFC 6531).
    assert [r["email"] for r in stored["recipients"]] == ["jörg@bücher.example"]
    async with RawSmtpServer.scripted() as wire:
        await tenant.server(wire.port)
        again = await send(
            plain.port,
            data.replace(b"MIME-Version", b"X-Mailgate-Stage: production\r\nMIME-Version"),
            token=token_of(tenant),
            rcpts=["jörg@bücher.example"],
            mail_options=["SMTPUTF8"],
        )
        await drain(tenant.ctx)
    assert (await tenant.message(queued_id(again)))["status"] == "sent"
    mail = [c for c in wire.received.split(b"\r\n") if c.startswith(b"MAIL FROM")]
    assert len(mail) == 1 and mail[0].startswith(b"MAIL FROM:<noreply@acme.example> ")
    assert b" SMTPUTF8" in mail[0]
    assert "RCPT TO:<jörg@bücher.example>".encode() in wire.received


@pytest.mark.parametrize("depth", [1200, 6000], ids=["on-the-loop", "in-a-thread"])
async def test_multiparts_nested_too_deeply_are_refused_not_deferred(
    tenant: Tenant, plain: SubmissionServer, depth: int
) -> None:
    """A client's mistake gets a 5xx: a 4xx would make it retry the same message forever."""
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n' for n in range(depth)
    )
    closing = "".join(f"--b{n}--\r\n" for n in reversed(range(depth)))
    head = _OK.replace("Content-Type: text/plain; charset=us-ascii\r\n", "")
    data = head + opening + "Content-Type: text/plain\r\n\r\nhi\r\n" + closing
    reply = await raw_send(plain.port, data.encode(), token=token_of(tenant))
    assert reply.startswith("554 5.6.0 message: "), reply
    assert "nested" in reply
    assert await message_count(tenant) == 0
