"""Classification of delivery events into outcomes: a table, pure and stdlib only.

An SMTP attempt ends either with a *reply* (a code and its text, at some phase of the
dialogue) or with a *failure* of the connection itself (timeout, connection lost, TLS, a
reply that is not SMTP). Both are turned into an :class:`Outcome` here, so that engines,
the worker and the tests share one table:

=====================================================  =============  ================
event                                                  kind           connection_error
=====================================================  =============  ================
2xx reply                                              SENT           no
4xx reply (421 included)                               DEFERRED       no
5xx reply                                              FAILED         no
530/534/535/538 at AUTH, 530 "authentication required"  AUTH_FAILED    no
other codes (1xx, unexpected 3xx, >= 600)              DEFERRED       yes
timeout, connection lost, refused, TLS, protocol error  DEFERRED       yes
timeout or connection lost after the final dot         UNKNOWN        yes
=====================================================  =============  ================

A reply that says when to come back ("try again in 120 seconds", "retry after 5 minutes",
"greylisted for 300s"...) yields ``retry_after`` in seconds.

Message-level summary (:func:`summarise`) of the per-recipient kinds, first rule that holds:
AUTH_FAILED if any recipient is AUTH_FAILED; UNKNOWN if any is UNKNOWN (the data may have
been accepted: retry and flag a possible duplicate); DEFERRED if any is DEFERRED (only those
recipients are retried); SENT if any is SENT (the rest failed permanently: nothing is left
to retry); FAILED otherwise (every recipient failed permanently).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

from mailgate.domain.delivery import OutcomeKind


class Phase(StrEnum):
    """Where in the SMTP dialogue an event happened (RFC 5321 section 3)."""

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command, up to its 354 reply
    MESSAGE = "message"  # the message content, up to and including the final dot
    FINAL = "final"  # waiting for the reply to the final dot
    RSET = "rset"


class Failure(StrEnum):
    """A failure of the connection rather than a reply from the server."""

    TIMEOUT = "timeout"
    CONNECTION_LOST = "connection_lost"
    CONNECTION_FAILED = "connection_failed"  # refused, unreachable, DNS
    TLS = "tls"
    PROTOCOL = "protocol"  # bytes that are not an SMTP reply, or an unexpected reply
    POLICY = "policy"  # the destination is refused by the instance network policy


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event means: its kind, whether the connection failed, when to retry."""

    kind: OutcomeKind
    connection_error: bool = False
    retry_after: float | None = None


#: RFC 4954 section 6: 530 authentication required, 534 mechanism too weak, 535 credentials
#: invalid, 538 encryption required for the mechanism. All mean "fix the server's settings".
AUTH_CODES = frozenset({530, 534, 535, 538})

#: The longest delay taken from a reply; anything longer is treated as this (7 days).
MAX_RETRY_AFTER = 7 * 24 * 3600.0

_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# "try again in 120 seconds", "retry after 5 min", "please wait 2 hours", "greylisted for
# 300s", "come back in 10 minutes": a trigger word, a few non-digit words, a number, a unit.
_RETRY_AFTER = re.compile(
    r"(?:try\s+again|retry|wait|greylist\w*|graylist\w*|come\s+back|deferred\s+for)"
    r"[^\d\n]{0,30}?(\d{1,7}(?:\.\d+)?)\s*"
    r"(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)\b",
    re.IGNORECASE,
)

# RFC 3463 section 2: class "." subject "." detail, at the start of the reply text.
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def parse_retry_after(text: str) -> float | None:
    """The delay in seconds a reply asks for, or ``None`` when it names none."""
    match = _RETRY_AFTER.search(text)
    if match is None:
        return None
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()]
    return min(seconds, MAX_RETRY_AFTER)


def enhanced_status(text: str) -> str | None:
    """The RFC 3463 enhanced status code at the start of ``text`` (``"5.7.8"``), if any."""
    match = _ENHANCED.match(text)
    return ".".join(match.groups()) if match else None


def classify_reply(code: int, text: str = "", *, phase: Phase) -> Outcome:
    """Classify the reply ``code`` (with its ``text``) received at ``phase``.

    The caller handles intermediate replies it expects (354 after DATA, 334 during AUTH,
    220 to STARTTLS) before calling this; here 2xx means success.
    """
    retry_after = parse_retry_after(text) if 400 <= code < 500 else None
    if 200 <= code < 300:
        return Outcome(OutcomeKind.SENT)
    if code in AUTH_CODES and (phase is Phase.AUTH or _mentions_authentication(code, text)):
        return Outcome(OutcomeKind.AUTH_FAILED)
    if 400 <= code < 500:
        return Outcome(OutcomeKind.DEFERRED, retry_after=retry_after)
    if 500 <= code < 600:
        return Outcome(OutcomeKind.FAILED)
    # Not a reply RFC 5321 section 4.2 allows here: treat as a protocol error.
    return Outcome(OutcomeKind.DEFERRED, connection_error=True)


def _mentions_authentication(code: int, text: str) -> bool:
    # Outside AUTH, 530 also means "must issue STARTTLS first" (not a credentials problem);
    # only an explicit mention of authentication holds the server's mail.
    return code != 530 or "auth" in text.lower()


def classify_failure(failure: Failure, *, phase: Phase) -> Outcome:
    """Classify a connection ``failure`` that happened at ``phase``.

    After the final dot has been handed to the network (``Phase.FINAL``), a timeout or a
    lost connection leaves it unknown whether the server accepted the message (RFC 5321
    section 4.1.1.4 puts the commitment at the reply): the outcome is UNKNOWN, which the
    caller retries while flagging a possible duplicate.
    """
    lost_or_silent = failure in (Failure.TIMEOUT, Failure.CONNECTION_LOST)
    if phase is Phase.FINAL and lost_or_silent:
        return Outcome(OutcomeKind.UNKNOWN, connection_error=True)
    return Outcome(OutcomeKind.DEFERRED, connection_error=True)


_SUMMARY_ORDER = (
    OutcomeKind.AUTH_FAILED,
    OutcomeKind.UNKNOWN,
    OutcomeKind.DEFERRED,
    OutcomeKind.SENT,
)


def summarise(kinds: Iterable[OutcomeKind]) -> OutcomeKind:
    """The message-level kind of per-recipient ``kinds`` (rules in the module docstring)."""
    present = set(kinds)
    for kind in _SUMMARY_ORDER:
        if kind in present:
            return kind
    return OutcomeKind.FAILED


_QUEUE_ID = re.compile(
    r"(?:queued\s+as|queue\s+id|id=|message\s+id:?)\s*<?([A-Za-z0-9][\w.@$-]{2,100})",
    re.IGNORECASE,
)


def remote_id(text: str) -> str | None:
    """The identifier the server gave the accepted message ("queued as 4F2A1B"), if any."""
    match = _QUEUE_ID.search(text)
    return match.group(1) if match else None


# -- HTTP engines (SendGrid, Microsoft Graph) ---------------------------------------------
#
# =====================================================  =============  ================
# HTTP event                                             kind           connection_error
# =====================================================  =============  ================
# 2xx (202 Accepted: "accepted by the provider")         SENT           no
# 401, 403                                               AUTH_FAILED    no
# 408, 409, 425, 429                                     DEFERRED       no
# other 4xx (400 bad request, 413 too large...)          FAILED         no
# 5xx                                                    DEFERRED       yes
# 1xx, 3xx, >= 600                                       DEFERRED       yes
# connection refused, policy, TLS, timeout before send   DEFERRED       yes
# timeout or connection lost after the request was sent  UNKNOWN        yes
# =====================================================  =============  ================
#
# Engines with provider-specific rules (Graph refreshes its token once on 401) apply them
# before falling back to this table.

#: RFC 9110 15.5.9 408, 15.5.10 409, RFC 8470 425, RFC 6585 4 429: "try again later".
HTTP_RETRY_STATUSES = frozenset({408, 409, 425, 429})
#: RFC 9110 15.5.2 401 (credentials missing or wrong), 15.5.4 403 (not allowed).
HTTP_AUTH_STATUSES = frozenset({401, 403})


def classify_http_status(status: int, *, retry_after: float | None = None) -> Outcome:
    """Classify the HTTP ``status`` of a send request (table above).

    ``retry_after`` (seconds, from ``Retry-After`` or a rate-limit header) is kept for the
    statuses that are retried.
    """
    if 200 <= status < 300:
        return Outcome(OutcomeKind.SENT)
    if status in HTTP_AUTH_STATUSES:
        return Outcome(OutcomeKind.AUTH_FAILED)
    if status in HTTP_RETRY_STATUSES:
        return Outcome(OutcomeKind.DEFERRED, retry_after=_capped(retry_after))
    if 400 <= status < 500:
        return Outcome(OutcomeKind.FAILED)
    return Outcome(OutcomeKind.DEFERRED, connection_error=True, retry_after=_capped(retry_after))


def classify_http_failure(*, request_sent: bool) -> Outcome:
    """Classify a request that got no HTTP response.

    Once the whole request has been handed to the network, the provider may have accepted
    the message before the connection was lost or the reply timed out: UNKNOWN, so the
    next attempt is flagged as a possible duplicate.
    """
    if request_sent:
        return Outcome(OutcomeKind.UNKNOWN, connection_error=True)
    return Outcome(OutcomeKind.DEFERRED, connection_error=True)


def parse_http_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (RFC 9110 section 10.2.3).

    The value is either a number of seconds or an HTTP-date; ``now`` is the current POSIX
    time. Unparsable values give ``None``; dates in the past give 0.
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return _capped(max(when.timestamp() - now, 0.0))


def parse_reset_epoch(value: str | None, *, now: float) -> float | None:
    """Seconds until ``value``, a POSIX time in seconds (``X-RateLimit-Reset``), or None."""
    if not value:
        return None
    try:
        epoch = float(value.strip())
    except ValueError:
        return None
    return _capped(max(epoch - now, 0.0))


def _capped(seconds: float | None) -> float | None:
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER)
