"""The one exception tree of Mailgate.

```text
MailgateError
├── ConfigurationError          instance misconfiguration (bad settings, missing or wrong keys)
│   └── SecretKeyError          secrets cannot be decrypted with the configured keys
├── RequestError                something a caller asked for cannot be done (mapped to 4xx)
│   ├── ValidationFailed        422: one or more fields are invalid (``errors`` names them)
│   │   └── TooLarge            413: a body or attachment exceeds the configured size
│   ├── NotFound                404: unknown object, or one of another tenant
│   ├── Conflict                409: uniqueness or state conflict
│   │   └── DependantsConflict  409: a delete needs to know where its dependants go
│   ├── Unauthenticated         401: no or bad credentials
│   ├── PermissionDenied        403: authenticated but lacking the permission
│   └── RateLimited             429: try again after ``retry_after`` seconds
└── PolicyViolation             an outbound destination refused by instance policy
```

Delivery outcomes are *not* exceptions: engines return outcome values. Exceptions are for
misconfiguration, refused requests and bugs. Foreign exceptions (SQLAlchemy, aiosmtplib,
httpx) are translated once, in the package that met them, with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: a dotted path (``oauth.client_id``, ``to[2]``) and a message."""

    field: str
    message: str


class MailgateError(Exception):
    """Base of every error Mailgate raises on purpose."""


class ConfigurationError(MailgateError):
    """The instance is misconfigured; the message says what to change."""


class SecretKeyError(ConfigurationError):
    """Stored secrets cannot be decrypted with the configured keys."""


class RequestError(MailgateError):
    """A request cannot be carried out; ``status`` is the HTTP status it maps to."""

    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldError] = list(errors or [])


class ValidationFailed(RequestError):
    status = 422
    title = "Validation failed"

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        """A validation error about one field; the detail repeats the message."""
        return cls(f"{field}: {message}", errors=[FieldError(field, message)])


class TooLarge(ValidationFailed):
    status = 413
    title = "Payload too large"


class NotFound(RequestError):
    status = 404
    title = "Not found"


class Conflict(RequestError):
    status = 409
    title = "Conflict"


class DependantsConflict(Conflict):
    """409: an object cannot be deleted while others depend on it; ``dependants`` (a JSON
    object) lists them in the problem document."""

    def __init__(
        self, detail: str, dependants: dict[str, Any], *, errors: list[FieldError]
    ) -> None:
        super().__init__(detail, errors=errors)
        self.dependants = dependants


class Unauthenticated(RequestError):
    status = 401
    title = "Unauthenticated"


class PermissionDenied(RequestError):
    status = 403
    title = "Forbidden"


class RateLimited(RequestError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PolicyViolation(MailgateError):
    """An outbound destination is refused by the instance network or port policy."""

    def __init__(self, message: str, *, code: str = "policy_refused") -> None:
        super().__init__(message)
        self.code = code
