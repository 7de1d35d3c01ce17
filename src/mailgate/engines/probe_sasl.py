"""SMTP AUTH for the probe (RFC 4954): PLAIN (RFC 4616), LOGIN and XOAUTH2.

Credentials go on the wire only here, base64-encoded, and appear in no message, report or
log: errors quote the server's reply, never what was sent.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Protocol

from mailgate.domain.servers import AuthKind
from mailgate.engines.config import ServerConfig
from mailgate.engines.probe_report import ProbeErrorCode
from mailgate.engines.probe_wire import Extensions, ProbeChannel
from mailgate.engines.smtp.wire import Reply

_TRUE = frozenset({"1", "true", "yes", "on"})


class _Fail(Protocol):
    def __call__(self, code: ProbeErrorCode, message: str, *, clean: bool = True) -> Exception: ...


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8")).decode("ascii")


def choose_mechanism(config: ServerConfig, offered: tuple[str, ...]) -> str | None:
    """The mechanism to use for ``config`` among those ``offered``, or ``None``.

    Password auth prefers PLAIN, then LOGIN; ``options.disable_auth_plain`` rules PLAIN out.
    """
    if config.auth is AuthKind.XOAUTH2:
        return "XOAUTH2" if "XOAUTH2" in offered else None
    plain_disabled = config.options.get("disable_auth_plain", "").strip().lower() in _TRUE
    for mechanism in ("PLAIN", "LOGIN"):
        if mechanism in offered and not (mechanism == "PLAIN" and plain_disabled):
            return mechanism
    return None


async def authenticate(
    channel: ProbeChannel,
    config: ServerConfig,
    extensions: Extensions,
    *,
    timeout: float,
    oauth_token: Callable[[ServerConfig], Awaitable[str]] | None,
    fail: _Fail,
) -> None:
    """Authenticate ``channel`` as ``config`` says; raise ``fail(...)`` when it cannot.

    Codes raised: ``auth_not_offered`` (no AUTH, or no mechanism Mailgate can use),
    ``auth_failed`` (5xx, typically 535 5.7.8), ``auth_temporary_failure`` (4xx, e.g. 454),
    ``oauth_token_failed`` and ``protocol_error`` (an unexpected reply).
    """
    offered = extensions.auth_mechanisms
    if "AUTH" not in extensions or not offered:
        raise fail(ProbeErrorCode.AUTH_NOT_OFFERED, "The server does not offer AUTH here.")
    mechanism = choose_mechanism(config, offered)
    if mechanism is None:
        raise fail(
            ProbeErrorCode.AUTH_NOT_OFFERED,
            f"The server offers {', '.join(offered)}; none is usable for auth {config.auth.value}.",
        )
    username = config.username or ""
    if mechanism == "XOAUTH2":
        if oauth_token is None:
            raise fail(ProbeErrorCode.OAUTH_TOKEN_FAILED, "No OAuth token source is configured.")
        try:
            token = await oauth_token(config)
        except Exception as exc:  # any token failure ends the probe alike
            raise fail(
                ProbeErrorCode.OAUTH_TOKEN_FAILED, f"Token request failed: {type(exc).__name__}."
            ) from exc
        reply = await _xoauth2(channel, username, token, timeout=timeout)
    else:
        password = config.password.reveal() if config.password else ""
        if mechanism == "PLAIN":
            reply = await _plain(channel, username, password, timeout=timeout)
        else:
            reply = await _login(channel, username, password, timeout=timeout)
    if reply.code == 235:
        return
    if 500 <= reply.code < 600:
        raise fail(ProbeErrorCode.AUTH_FAILED, f"AUTH {mechanism} was rejected: {reply}")
    if 400 <= reply.code < 500:
        raise fail(ProbeErrorCode.AUTH_TEMPORARY_FAILURE, f"AUTH {mechanism} failed: {reply}")
    raise fail(
        ProbeErrorCode.PROTOCOL_ERROR, f"Unexpected reply to AUTH: {reply.code}", clean=False
    )


async def _plain(channel: ProbeChannel, username: str, password: str, *, timeout: float) -> Reply:
    # RFC 4616 section 2: [authzid] NUL authcid NUL passwd, sent as the initial response
    # (RFC 4954 section 4) to save a round trip.
    response = _b64(f"\0{username}\0{password}")
    reply = await channel.command("AUTH", f"PLAIN {response}", timeout=timeout)
    if reply.code == 334:
        reply = await channel.send_line(response, timeout=timeout)
    return reply


async def _login(channel: ProbeChannel, username: str, password: str, *, timeout: float) -> Reply:
    # The LOGIN mechanism (draft-murchison-sasl-login): user name, then password.
    reply = await channel.command("AUTH", "LOGIN", timeout=timeout)
    for value in (username, password):
        if reply.code != 334:
            return reply
        reply = await channel.send_line(_b64(value), timeout=timeout)
    return reply


async def _xoauth2(channel: ProbeChannel, username: str, token: str, *, timeout: float) -> Reply:
    # Google and Microsoft XOAUTH2: "user=" u ^A "auth=Bearer " token ^A ^A. On failure the
    # server sends a 334 challenge with a JSON error; an empty line then yields the 5xx.
    response = _b64(f"user={username}\x01auth=Bearer {token}\x01\x01")
    reply = await channel.command("AUTH", f"XOAUTH2 {response}", timeout=timeout)
    if reply.code == 334:
        reply = await channel.send_line("", timeout=timeout)
    return reply
