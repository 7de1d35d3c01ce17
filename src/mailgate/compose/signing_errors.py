"""The error raised when a message cannot be signed.

Mailgate never sends a message unsigned because signing failed (SPEC section 3, "Signing"):
the signing functions either return signed bytes or raise :class:`SigningError`, and the
delivery pipeline treats the error as a failure of that message, not as a reason to skip
the signature.
"""

from __future__ import annotations

from enum import StrEnum

from mailgate.errors import MailgateError


class SigningFailure(StrEnum):
    """Why a message could not be signed; stable codes for logs and delivery records."""

    CERTIFICATE_EXPIRED = "certificate_expired"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    CERTIFICATE_NOT_FOR_EMAIL = "certificate_not_for_email"
    KEY_MISMATCH = "key_mismatch"
    UNSUPPORTED_KEY = "unsupported_key"
    MALFORMED_MESSAGE = "malformed_message"


class SigningError(MailgateError):
    """A message cannot be signed; ``reason`` says why and the message says what to fix.

    The message never contains key material.
    """

    def __init__(self, message: str, *, reason: SigningFailure) -> None:
        super().__init__(message)
        self.reason = reason
