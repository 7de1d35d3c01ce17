"""Removing secrets from text that is stored or shown: replies, transcripts, error messages.

A remote server may repeat what it was sent (a password in a 535 reply, an API key in an
error body). Every engine passes such text through one :class:`Redactor` holding its
secrets before the text is kept: the secret itself and its base64 form, which is how SMTP
AUTH (RFC 4954) carries it; SASL payloads are registered whole, so their base64 goes too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor", "secret_forms"]

REDACTED = "[redacted]"

#: Secrets shorter than this are not scrubbed (they would blank out ordinary words); SMTP
#: still never shows them, because AUTH commands are redacted whole.
_MIN_SCRUB_LENGTH = 4


def secret_forms(secret: str) -> tuple[str, ...]:
    """``secret`` and its base64 encoding, as they could appear in a dialogue."""
    raw = secret.encode("utf-8")
    return (secret, base64.b64encode(raw).decode("ascii"))


class Redactor:
    """Replaces every registered secret (and its base64 form) with :data:`REDACTED`."""

    __slots__ = ("_forms",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Register more strings that must never show."""
        for secret in secrets:
            for form in secret_forms(secret):
                if len(form) >= _MIN_SCRUB_LENGTH and form not in self._forms:
                    self._forms.append(form)
        # Longest first, so a secret contained in a longer one never leaves a remainder.
        self._forms.sort(key=len, reverse=True)

    def __bool__(self) -> bool:
        """Whether any secret is registered (else there is nothing to scrub)."""
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text
