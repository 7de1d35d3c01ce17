"""The capture engine and the engine factory."""

from __future__ import annotations

import pytest
from tests.support.smtp_servers import LoopbackDialer

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import Engine as EngineKind
from mailgate.engines.base import Engine
from mailgate.engines.capture import CaptureEngine
from mailgate.engines.config import ServerConfig
from mailgate.engines.factory import EngineCache, engine_for
from mailgate.engines.smtp.engine import SmtpEngine
from mailgate.errors import ConfigurationError

ENVELOPE = Envelope("a@mailgate.test", ("b@mailgate.test", "c@mailgate.test"))


async def test_capture_accepts_everything_and_keeps_the_last_messages() -> None:
    engine = CaptureEngine(keep=2)
    results = [await engine.deliver(ENVELOPE, f"m{i}\r\n".encode()) for i in range(3)]
    assert all(r.kind is OutcomeKind.SENT and r.code == 250 for r in results)
    assert results[0].reply == "captured"
    assert [r.kind for r in results[0].recipients] == [OutcomeKind.SENT, OutcomeKind.SENT]
    assert [m.data for m in engine.messages] == [b"m1\r\n", b"m2\r\n"]
    assert engine.delivered == 3
    assert isinstance(engine, Engine)
    await engine.aclose()
    with pytest.raises(RuntimeError):
        await engine.deliver(ENVELOPE, b"late\r\n")


def test_factory_builds_smtp_and_capture_and_refuses_the_rest() -> None:
    dialer = LoopbackDialer()
    assert isinstance(
        engine_for(ServerConfig(key="c", engine=EngineKind.CAPTURE), dialer=dialer), CaptureEngine
    )
    smtp = engine_for(ServerConfig(key="s", host="mail.mailgate.test"), dialer=dialer)
    assert isinstance(smtp, SmtpEngine)
    # The HTTP engines exist; without their credentials they cannot be built.
    with pytest.raises(ConfigurationError, match="api_key"):
        engine_for(ServerConfig(key="x", engine=EngineKind.SENDGRID), dialer=dialer)
    with pytest.raises(ConfigurationError, match="sender_upn"):
        engine_for(ServerConfig(key="x", engine=EngineKind.MSGRAPH), dialer=dialer)


async def test_engine_cache_keeps_one_engine_per_key_and_closes_the_rest() -> None:
    cache = EngineCache(dialer=LoopbackDialer())
    one = ServerConfig(key="one", engine=EngineKind.CAPTURE)
    two = ServerConfig(key="two", engine=EngineKind.CAPTURE)
    first = cache.get(one)
    assert cache.get(one) is first
    second = cache.get(two)
    assert len(cache) == 2
    await cache.retain(["two"])
    assert "one" not in cache and "two" in cache
    assert isinstance(first, CaptureEngine)
    with pytest.raises(RuntimeError):
        await first.deliver(ENVELOPE, b"x\r\n")  # closed
    replaced = cache.get(ServerConfig(key="two", engine=EngineKind.CAPTURE, options={"a": "b"}))
    assert replaced is not second
    await cache.aclose()
    assert len(cache) == 0
