"""Logging setup: text or JSON lines, with a filter that scrubs secrets as a last line."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_AUTH_LINE = re.compile(r"(?i)(AUTH\s+(?:PLAIN|LOGIN|XOAUTH2)\s+)\S+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# The query of an http(s) URL (webhook URLs often carry a token there) and its user info.
_URL_QUERY = re.compile(r"(?i)(\bhttps?://[^\s\"'<>?#]*\?)[^\s\"'<>#]+")
_URL_USERINFO = re.compile(r"(?i)(\bhttps?://)[^\s\"'<>/?#@]+@")

#: Libraries whose INFO lines name every URL they call (httpx: "HTTP Request: POST https://
#: hooks.example/?token=..."); they speak from WARNING up.
QUIET_LOGGERS = ("httpx", "httpcore", "alembic.runtime.migration", "alembic.runtime.plugins")


def scrub(text: str) -> str:
    """Blank AUTH payloads, bearer tokens, URL queries and URL user info that should never
    have reached a log line."""
    text = _BEARER.sub(r"\1[redacted]", _AUTH_LINE.sub(r"\1[redacted]", text))
    if "://" in text:
        text = _URL_USERINFO.sub(r"\1[redacted]@", _URL_QUERY.sub(r"\1[redacted]", text))
    return text


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(*, fmt: str = "text", level: str = "INFO") -> None:
    """Configure the root logger once for a Mailgate process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Schema checks run on every start and HTTP clients log each URL: not news, and a URL
    # may carry a secret.
    for chatter in QUIET_LOGGERS:
        logging.getLogger(chatter).setLevel(max(logging.WARNING, root.level))
