"""RFC 9457 problem details (``application/problem+json``) for every error Mailgate returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailgate.errors import (
    ConfigurationError,
    DependantsConflict,
    FieldError,
    MailgateError,
    PolicyViolation,
    RateLimited,
    RequestError,
)

log = logging.getLogger("mailgate.web")

PROBLEM = "application/problem+json"


def _text(value: str) -> str:
    """``value`` safe to encode as UTF-8: a lone surrogate (echoed from a request) is shown
    as its escape, so an error answer can always be sent."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": _text(detail),
    }
    if errors:
        body["errors"] = [{"field": _text(e.field), "message": _text(e.message)} for e in errors]
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


async def _on_request_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    extra = {"dependants": exc.dependants} if isinstance(exc, DependantsConflict) else None
    return problem(
        exc.status, exc.title, exc.detail, errors=exc.errors, headers=headers, extra=extra
    )


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[FieldError] = []
    malformed = False
    for item in exc.errors():
        if item.get("type") == "json_invalid":
            malformed = True
        message = str(item.get("msg", "is invalid"))
        if item.get("type") == "extra_forbidden":
            message = "is not a known field"
        field = _loc_to_field(tuple(item.get("loc", ())))
        # A value refused by Strict._json_text: its place inside the field.
        where = str((item.get("ctx") or {}).get("where", ""))
        if where and item.get("type") == "json_text":
            field += where if where.startswith("[") else f".{where}"
        errors.append(FieldError(field, message))
    if malformed:
        return problem(400, "Malformed request", "The body is not valid JSON.")
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem(422, "Validation failed", detail, errors=errors)


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, str(exc.detail), str(exc.detail), headers=headers)


async def _on_policy(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PolicyViolation)
    return problem(422, "Refused by policy", str(exc))


async def _on_configuration(_: Request, exc: Exception) -> JSONResponse:
    log.error("configuration error: %s", exc)
    return problem(503, "Service misconfigured", str(exc))


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "An unexpected error occurred; see the server log.")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""
    app.add_exception_handler(RequestError, _on_request_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(PolicyViolation, _on_policy)
    app.add_exception_handler(ConfigurationError, _on_configuration)
    app.add_exception_handler(MailgateError, _on_unexpected)
