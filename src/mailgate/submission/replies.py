"""SMTP replies of the submission server, and how refused requests map to them.

Reply codes follow RFC 5321 section 4.2 and enhanced status codes RFC 3463 / RFC 5248:

| Situation | Reply |
| --- | --- |
| message accepted and durably committed | ``250 2.0.0 Ok: queued as ID`` |
| no AUTH yet, or the token stopped being valid | ``530 5.7.0`` |
| bad credentials, unknown tenant, another tenant's token | ``535 5.7.8`` (one text for all) |
| token without ``email:send`` | ``535 5.7.8`` naming the permission |
| malformed MAIL FROM / RCPT TO address | ``553 5.1.7`` / ``553 5.1.3`` |
| more recipients than allowed | ``452 4.5.3`` (RFC 5321 section 4.5.3.1.10) |
| message larger than allowed | ``552 5.3.4`` |
| sender account, app or stage refused (``sender``, ``X-Mailgate-App``/``-Stage``) | ``550 5.7.1`` |
| anything else wrong with the message | ``554 5.6.0``, one line per problem |
| database busy or Mailgate failing: nothing was queued | ``451 4.3.0`` |
| Mailgate misconfigured (e.g. secret keys): nothing was queued | ``451 4.3.5`` |

Reply text never holds a secret and is reduced to printable ASCII, so nothing a client sent
(an address, a header name) can break a reply line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from mailgate.errors import RateLimited, RequestError, TooLarge, ValidationFailed
from mailgate.services.submit_headers import APP_HEADER, STAGE_HEADER
from mailgate.services.submit_raw import SENDER_FIELD

#: Problems listed in one reply at most (the rest are summarised).
MAX_LINES: Final = 10
# RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets with its code and CRLF.
_MAX_TEXT: Final = 480
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]")

AUTH_REQUIRED: Final = "530 5.7.0 Authentication required"
AUTH_INVALID: Final = "535 5.7.8 Authentication credentials invalid"
AUTH_TEMPORARY: Final = "454 4.7.0 Temporary authentication failure; try again later"
TEMPORARY: Final = "451 4.3.0 Temporary failure; the message was not queued, try again later"
MISCONFIGURED: Final = (
    "451 4.3.5 Mailgate is misconfigured; the message was not queued, try again later"
)
SHUTTING_DOWN: Final = "421 4.3.2 Mailgate is shutting down; try again later"
TOO_MANY_CONNECTIONS: Final = "421 4.7.0 Too many connections; try again later"

_ROUTING_FIELDS: Final = frozenset({SENDER_FIELD, APP_HEADER, STAGE_HEADER})


def clean(text: str) -> str:
    """``text`` as one printable ASCII reply line of bounded length."""
    text = _UNPRINTABLE.sub("?", text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def reply(code: int, status: str, lines: str | Sequence[str]) -> str:
    """A (multi-line, RFC 5321 section 4.2.1) reply: ``554-5.6.0 first`` … ``554 5.6.0 last``."""
    texts = [lines] if isinstance(lines, str) else list(lines)
    if len(texts) > MAX_LINES:
        texts = [*texts[: MAX_LINES - 1], f"and {len(texts) - MAX_LINES + 1} more problems"]
    out = [f"{code}-{status} {clean(t)}" for t in texts[:-1]]
    out.append(f"{code} {status} {clean(texts[-1])}")
    return "\r\n".join(out)


def _problems(exc: RequestError) -> list[str]:
    if not exc.errors:
        return [exc.detail]
    return [f"{e.field}: {e.message}" if e.field else e.message for e in exc.errors]


def for_error(exc: RequestError) -> str:
    """The reply for a request the services refused (see the table above)."""
    problems = _problems(exc)
    fields = {e.field for e in exc.errors}
    if isinstance(exc, TooLarge):
        return reply(552, "5.3.4", problems)
    if isinstance(exc, RateLimited):
        return reply(451, "4.7.0", f"{exc.detail} (retry after {exc.retry_after} s)")
    if not isinstance(exc, ValidationFailed):
        return reply(550, "5.7.1", problems)
    if "RCPT TO" in fields:
        return reply(452, "4.5.3", problems)
    if any(f.startswith("RCPT TO") for f in fields):
        return reply(553, "5.1.3", problems)
    if "MAIL FROM" in fields:
        return reply(553, "5.1.7", problems)
    if fields & _ROUTING_FIELDS:
        return reply(550, "5.7.1", problems)
    return reply(554, "5.6.0", problems)
