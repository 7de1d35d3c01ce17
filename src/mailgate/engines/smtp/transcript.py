"""The redacted record of one SMTP delivery attempt.

One line per command sent (``C: ``) and per reply line received (``S: ``), plus notes
(``* ``) such as "connected" or "reusing connection". The contract:

* AUTH payloads never appear: the engine records ``AUTH PLAIN [redacted]`` and
  ``C: [redacted]`` for SASL responses (RFC 4954 section 4) instead of the bytes it sent;
* every line is also scrubbed of the registered secrets (passwords, tokens, their base64
  forms), so not even a server echoing one back can put it in the transcript;
* message content is summarised as ``C: [N bytes]``, never included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailgate.engines.redaction import REDACTED, Redactor

__all__ = ["REDACTED", "Transcript"]


class Transcript:
    """An append-only, redacted transcript; :meth:`render` gives the text to store."""

    __slots__ = ("_lines", "_redactor", "tls_version")

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        #: The TLS version of the connection this attempt used, once known.
        self.tls_version: str | None = None
        self._lines: list[str] = []
        self._redactor = Redactor(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Register more strings that must never show (their base64 forms are added too)."""
        self._redactor.add(secrets)

    def client(self, line: str) -> None:
        """A command line as sent (without CRLF)."""
        self._lines.append("C: " + self._clean(line))

    def client_redacted(self, prefix: str = "") -> None:
        """A command whose argument is a secret: ``prefix`` then ``[redacted]``."""
        self._lines.append(f"C: {prefix} {REDACTED}" if prefix else f"C: {REDACTED}")

    def client_data(self, size: int) -> None:
        """The content as written (dot-stuffed with its final dot, or one BDAT chunk),
        summarised by size."""
        self._lines.append(f"C: [{size} bytes]")

    def server(self, code: int, lines: Sequence[str]) -> None:
        """A reply: one ``S:`` line per reply line, continuation marks as on the wire."""
        if len(lines) == 1:  # most replies, written once per message and more
            self._lines.append(f"S: {code} {self._clean(lines[0])}".rstrip())
            return
        texts = lines or ("",)
        last = len(texts) - 1
        for index, text in enumerate(texts):
            sep = " " if index == last else "-"
            self._lines.append(f"S: {code}{sep}{self._clean(text)}".rstrip())

    def note(self, text: str) -> None:
        """A remark of the client's own (connection events, decisions, failures)."""
        self._lines.append("* " + self._clean(text))

    def redact(self, text: str) -> str:
        """``text`` (a server reply, an error message) without any registered secret."""
        return self._redactor(text)

    def render(self) -> str:
        """The transcript as text, one line per entry."""
        return "\n".join(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def _clean(self, text: str) -> str:
        # Control characters from the server never reach the log as such.
        if "\r" in text or "\n" in text:
            text = text.replace("\r", "\\r").replace("\n", "\\n")
        return self._redactor(text) if self._redactor else text
