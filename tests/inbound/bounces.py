"""Bounce samples in the shapes real MTAs send (CRLF line ends, as on the wire)."""

from __future__ import annotations


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def postfix_dsn(
    original_id: str,
    *,
    failed: str = "gone@example.net",
    delayed: str | None = None,
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
) -> bytes:
    """An RFC 3464 report as Postfix writes it, returning the original headers."""
    delayed_block = ""
    if delayed:
        delayed_block = f"""
Final-Recipient: rfc822; {delayed}
Original-Recipient: rfc822;{delayed}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.net[192.0.2.7]:25: Connection timed out
"""
    return _crlf(f"""Return-Path: <>
Received: by mx.example.org (Postfix) id 4Y2kQf1c2Xz9t; Sat, 21 Nov 2026 10:00:03 +0000 (UTC)
Date: Sat, 21 Nov 2026 10:00:03 +0000 (UTC)
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: noreply@acme.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4Y2kQf1c2Xz9t.1763719203/mx.example.org"
Message-Id: <20261121100003.4Y2kQf1c2Xz9t@mx.example.org>

This is a MIME-encapsulated message.

--4Y2kQf1c2Xz9t.1763719203/mx.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{failed}>: host mx.example.net[192.0.2.7] said: 550 5.1.1
    <{failed}>: Recipient address rejected: User unknown (in reply to RCPT TO
    command)

--4Y2kQf1c2Xz9t.1763719203/mx.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
X-Postfix-Queue-ID: 4Y2kQf1c2Xz9t
X-Postfix-Sender: rfc822; noreply@acme.example
Arrival-Date: Sat, 21 Nov 2026 10:00:01 +0000 (UTC)

Final-Recipient: rfc822; {failed}
Original-Recipient: rfc822;{failed}
Action: failed
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: {diagnostic}
{delayed_block}
--4Y2kQf1c2Xz9t.1763719203/mx.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <noreply@acme.example>
From: Acme <noreply@acme.example>
To: {failed}
Subject: Your invoice
Message-ID: {original_id}
Date: Sat, 21 Nov 2026 09:59:58 +0000

--4Y2kQf1c2Xz9t.1763719203/mx.example.org--
""")


def exim_bounce(original_id: str, *, failed: str = "gone@example.net") -> bytes:
    """Exim's classic non-DSN bounce: X-Failed-Recipients and the original quoted inline."""
    return _crlf(f"""Return-path: <>
From: Mail Delivery System <Mailer-Daemon@relay.example.org>
To: noreply@acme.example
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1tXyZ-0001aB-Cd@relay.example.org>
X-Failed-Recipients: {failed}
Auto-Submitted: auto-replied
Date: Sat, 21 Nov 2026 10:05:00 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {failed}
    host mx.example.net [192.0.2.7]
    SMTP error from remote mail server after RCPT TO:<{failed}>:
    550 5.1.1 No such user here

------ This is a copy of the message, including all the headers. ------

Return-path: <noreply@acme.example>
From: Acme <noreply@acme.example>
To: {failed}
Subject: Your invoice
Message-ID: {original_id}
Date: Sat, 21 Nov 2026 09:59:58 +0000

Hello.
""")


def qmail_bounce(original_id: str, *, failed: str = "gone@example.net") -> bytes:
    """qmail-send's "failure notice", the original quoted after a marker line."""
    return _crlf(f"""Return-Path: <>
From: MAILER-DAEMON@mail.example.com
To: noreply@acme.example
Subject: failure notice
Message-ID: <20261121100600.qmail@mail.example.com>
Date: Sat, 21 Nov 2026 10:06:00 +0000

Hi. This is the qmail-send program at mail.example.com.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{failed}>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.7.1 Mailbox unavailable
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.

Return-Path: <noreply@acme.example>
From: Acme <noreply@acme.example>
Message-ID: {original_id}
Subject: Your invoice

Hello.
""")


def plain_mail(
    subject: str, *, message_id: str, sender: str = "Carol <carol@example.com>"
) -> bytes:
    return _crlf(f"""From: {sender}
To: noreply@acme.example
Subject: {subject}
Message-ID: {message_id}
Date: Sat, 21 Nov 2026 09:00:00 +0000
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello from {subject}.
""")
