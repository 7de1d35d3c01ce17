"""Reading bounces: what message came back, for which recipients, and why.

Two shapes are understood:

* **DSN** — ``multipart/report; report-type=delivery-status`` (RFC 3464, and its
  internationalised form ``message/global-delivery-status``, RFC 6533). The per-recipient
  fields ``Final-Recipient``, ``Action``, ``Status`` (RFC 3463) and ``Diagnostic-Code`` are
  read as they are; the original Message-ID comes from the returned message or headers
  part (``message/rfc822``, ``text/rfc822-headers``).
* **Quoted** — the non-standard bounces that older MTAs still send (qmail, Exim without
  DSN, assorted appliances): recognised by the sender (``MAILER-DAEMON``, ``postmaster``),
  an ``X-Failed-Recipients`` header or a typical subject, with the original headers
  quoted in the body. Failed recipients come from ``X-Failed-Recipients`` or from lines
  such as ``<user@example.com>: 550 5.1.1 unknown user`` (qmail, Postfix) and the indented
  addresses Exim lists after "failed:".

Pure functions over :class:`email.message.Message`; no IO.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Iterator
from email.message import Message

from mailgate.domain.inbound import Bounce, BounceAction, BouncedRecipient, BounceFormat

_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?![\d.])")
_MESSAGE_ID_LINE = re.compile(r"^message-id:[ \t]*(\S[^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_ANGLE_ID = re.compile(r"<[^<>\s]+>")
# Every pattern below runs on text anyone can mail to an inbox, so each is linear: a match
# starts only where a run of address characters starts (the look-behind), the local part of
# an angle address holds no "@", and an atomic group keeps the first keyword of a line.
_ADDRESS = re.compile(
    r"(?<![^\s<>@,;:\"()\[\]])"
    r"[^\s<>@,;:\"()\[\]]+@[^\s<>@,;:\"()\[\]]+\.[^\s<>@,;:\"()\[\]]+"
)
# qmail and Postfix's human-readable part: "<user@example.com>: reason" starting a line.
_ANGLE_RECIPIENT_LINE = re.compile(r"^<([^<>\s@]+@[^<>\s]+)>:?[ \t]*(.*)$", re.MULTILINE)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
_BOUNCE_SUBJECTS = re.compile(
    r"undeliver|returned mail|returned to sender|delivery (status notification|failure|"
    r"has failed|failed)|mail delivery (failed|failure|subsystem)|failure notice|"
    r"non[- ]?delivery|could not be delivered|delivery problem",
    re.IGNORECASE,
)
_EXIM_FAILED = re.compile(
    r"^(?>[^\n]*?(?:address(?:es)?|recipients?))[^\n]*failed:\s*\n", re.IGNORECASE | re.MULTILINE
)
# Where quoted bounces start the copy of the original message.
_QUOTE_MARKERS = re.compile(
    r"^(-+ ?(this is a copy|below this line|original message|the header)|"
    r"(original|returned) message (header|follows)|--- below this line)",
    re.IGNORECASE | re.MULTILINE,
)
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
)
_MAX_DIAGNOSTIC = 1000
#: Recipients read from one bounce at most (a crafted one may list millions).
MAX_BOUNCED_RECIPIENTS = 1000
# How far past a recipient its reason is looked for (the reason is cut to _MAX_DIAGNOSTIC).
_DIAGNOSTIC_WINDOW = 16 * 1024


def normalise_message_id(value: str | None) -> str | None:
    """``<local@domain>`` from a Message-ID header value (comments and spaces dropped)."""
    if not value:
        return None
    match = _ANGLE_ID.search(value)
    if match:
        return match.group(0)
    bare = value.strip()
    return f"<{bare}>" if bare and " " not in bare and "@" in bare else None


def _clean(text: str | None, limit: int = _MAX_DIAGNOSTIC) -> str | None:
    if text is None:
        return None
    flat = " ".join(text.replace("\x00", " ").split())
    return flat[:limit] or None


def _codes(text: str | None) -> tuple[str | None, int | None]:
    """The enhanced status code and the SMTP reply code mentioned in ``text``."""
    if not text:
        return None, None
    status = _ENHANCED_STATUS.search(text)
    code = _SMTP_CODE.search(text)
    return (status.group(1) if status else None), (int(code.group(1)) if code else None)


def _address_field(value: str | None) -> str | None:
    """``user@example.com`` from ``rfc822; user@example.com`` (RFC 3464 2.3.2)."""
    if not value:
        return None
    _, _, address = value.partition(";") if ";" in value else ("", "", value)
    address = address.strip().strip("<>").strip()
    return address.lower() if "@" in address else None


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part: per-message first, then per-recipient.

    The ``email`` package parses ``message/delivery-status`` into blocks itself; the global
    form (and a mislabelled part) arrives as text and is split on blank lines here.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = _text_of(part)
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [parser.parsestr(chunk.strip() + "\n") for chunk in chunks if chunk.strip()]


def _original_message_id(message: Message) -> str | None:
    """The Message-ID of the returned message, from its attached copy or quoted headers."""
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found = normalise_message_id(payload[0].get("Message-ID"))
        else:
            match = _MESSAGE_ID_LINE.search(_text_of(part))
            found = normalise_message_id(match.group(1)) if match else None
        if found:
            return found
    return None


def _text_parts(message: Message) -> Iterator[str]:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            yield _text_of(part)


def _parse_dsn(message: Message) -> Bounce | None:
    reporting_mta: str | None = None
    recipients: list[BouncedRecipient] = []
    for part in message.walk():
        if part.get_content_type() not in _DSN_TYPES:
            continue
        for block in _field_blocks(part):
            if block.get("Reporting-MTA") and reporting_mta is None:
                reporting_mta = _clean(str(block["Reporting-MTA"]).partition(";")[2] or None, 255)
            email_ = _address_field(block.get("Final-Recipient")) or _address_field(
                block.get("Original-Recipient")
            )
            if email_ is None:
                continue
            if len(recipients) >= MAX_BOUNCED_RECIPIENTS:
                break
            try:
                action = BounceAction(str(block.get("Action", "failed")).strip().lower())
            except ValueError:
                action = BounceAction.FAILED
            diagnostic = block.get("Diagnostic-Code")
            diagnostic_text = _clean(str(diagnostic).partition(";")[2] if diagnostic else None)
            status, _ = _codes(str(block.get("Status", "")))
            found_status, code = _codes(diagnostic_text)
            recipients.append(
                BouncedRecipient(
                    email=email_,
                    action=action,
                    status=status or found_status,
                    code=code,
                    diagnostic=diagnostic_text,
                )
            )
    if not recipients:
        return None
    return Bounce(
        format=BounceFormat.DSN,
        original_message_id=_original_message_id(message),
        recipients=tuple(recipients),
        reporting_mta=reporting_mta,
    )


def looks_like_bounce(message: Message) -> bool:
    """A non-DSN bounce: from a mailer daemon, naming failed recipients, or so titled."""
    if message.get("X-Failed-Recipients"):
        return True
    sender = str(message.get("From", "")).lower()
    if any(f"{name}@" in sender or sender.startswith(name) for name in _BOUNCE_SENDERS):
        return True
    return bool(_BOUNCE_SUBJECTS.search(str(message.get("Subject", ""))))


def _explanation(text: str) -> str:
    """The bounce's own words: the body before the quoted copy of the original."""
    marker = _QUOTE_MARKERS.search(text)
    return text[: marker.start()] if marker else text


def _diagnostic_after(text: str, start: int) -> str | None:
    """The reason following a recipient: the rest of its line and its continuation lines."""
    lines: list[str] = []
    for line in text[start : start + _DIAGNOSTIC_WINDOW].splitlines():
        if not line.strip() or (lines and _ANGLE_RECIPIENT_LINE.match(line)):
            if lines:
                break
            continue
        lines.append(line.strip())
        if len(lines) >= 6:
            break
    return _clean(" ".join(lines))


def _quoted_recipients(message: Message, text: str) -> list[BouncedRecipient]:
    explanation = _explanation(text)
    found: dict[str, str | None] = {}
    header = message.get("X-Failed-Recipients")
    if header:
        for address in _ADDRESS.findall(str(header))[:MAX_BOUNCED_RECIPIENTS]:
            found.setdefault(address.lower(), None)
    for match in _ANGLE_RECIPIENT_LINE.finditer(explanation):
        if len(found) >= MAX_BOUNCED_RECIPIENTS:
            break
        reason = _clean(match.group(2)) or _diagnostic_after(explanation, match.end())
        found[match.group(1).lower()] = reason
    exim = _EXIM_FAILED.search(explanation)
    if exim:
        block = explanation[exim.end() :]
        cursor = exim.end()
        for line in block.splitlines():
            if not line.strip():
                if found:
                    break
                continue
            if len(found) >= MAX_BOUNCED_RECIPIENTS:
                break
            address = _ADDRESS.fullmatch(line.strip().strip("<>"))
            if address and line[:1].isspace():
                cursor = explanation.find(line, cursor) + len(line)
                found[address.group(0).lower()] = _diagnostic_after(explanation, cursor)
    out = []
    for address, reason in found.items():
        if reason is None:
            reason = _clean(explanation, 300)
        status, code = _codes(reason)
        out.append(
            BouncedRecipient(
                email=address,
                action=BounceAction.FAILED,
                status=status,
                code=code,
                diagnostic=reason,
            )
        )
    return out


def _parse_quoted(message: Message) -> Bounce | None:
    text = "\n".join(_text_parts(message))
    original = _original_message_id(message)
    if original is None:
        quoted = text[len(_explanation(text)) :]
        match = _MESSAGE_ID_LINE.search(quoted) or _MESSAGE_ID_LINE.search(text)
        original = normalise_message_id(match.group(1)) if match else None
    recipients = _quoted_recipients(message, text)
    if original is None and not recipients:
        return None
    return Bounce(
        format=BounceFormat.QUOTED,
        original_message_id=original,
        recipients=tuple(recipients),
    )


def parse_bounce(message: Message) -> Bounce | None:
    """The bounce ``message`` is, or None when it is ordinary mail."""
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "") or "").lower()
        if report_type == "delivery-status":
            parsed = _parse_dsn(message)
            if parsed is not None:
                return parsed
    if looks_like_bounce(message):
        return _parse_quoted(message)
    return None
