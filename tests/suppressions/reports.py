"""ARF feedback reports (RFC 5965) as mailbox providers send them (CRLF line ends)."""

from __future__ import annotations


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def arf_report(
    original_id: str,
    *,
    rcpt: str | None = "ok@example.net",
    to_header: str = "ok@example.net",
    feedback_type: str = "abuse",
) -> bytes:
    """An RFC 5965 report returning the complained-about message's header (section 3)."""
    rcpt_field = f"Original-Rcpt-To: {rcpt}\n" if rcpt else ""
    return _crlf(f"""From: <fbl@mailbox.example.com>
Date: Sat, 05 Dec 2026 08:00:00 +0000
Subject: FW: Your invoice
To: <noreply@acme.example>
Message-ID: <fbl-{abs(hash(original_id)) % 10**8}@mailbox.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
    boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Sat, 05 Dec 2026 07:55:00 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <noreply@acme.example>
{rcpt_field}Arrival-Date: Sat, 05 Dec 2026 07:55:00 +0000
Reporting-MTA: dns; mail.mailbox.example.com
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: text/rfc822-headers

From: Acme <noreply@acme.example>
To: {to_header}
Subject: Your invoice
Message-ID: {original_id}
Date: Sat, 05 Dec 2026 07:54:00 +0000

--part1_13d.2e68ed54_boundary--
""")
