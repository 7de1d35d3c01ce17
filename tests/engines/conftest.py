"""Fixtures for the engine tests: a test PKI, a loopback dialer, server configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.smtp_servers import HOST, LoopbackDialer
from tests.support.tls import CertFiles, TestCA

from mailgate.domain.servers import Security
from mailgate.engines.config import ServerConfig
from mailgate.engines.smtp.wire import SmtpWire


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def good_cert(test_ca: TestCA) -> CertFiles:
    return test_ca.issue(HOST)


@pytest.fixture
def dialer() -> LoopbackDialer:
    return LoopbackDialer()


ConfigFactory = Callable[..., ServerConfig]


@pytest.fixture
def make_config(test_ca: TestCA) -> ConfigFactory:
    """``make_config(port, **overrides)``: a fast-timeout SMTP config trusting the test CA."""

    def make(port: int, **overrides: Any) -> ServerConfig:
        values: dict[str, Any] = {
            "key": f"test-{port}",
            "host": HOST,
            "port": port,
            "security": Security.NONE,
            "ca_certificates": test_ca.ca_pem,
            "timeout_seconds": 5.0,
            "max_connections": 2,
            "options": {"ehlo_name": "client.mailgate.test"},
        }
        values.update(overrides)
        return ServerConfig(**values)

    return make


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every chunk of bytes the SMTP client hands to its transport, in order."""
    seen: list[bytes] = []
    original = SmtpWire.write

    def counting(self: SmtpWire, data: bytes) -> None:
        seen.append(data)
        original(self, data)

    monkeypatch.setattr(SmtpWire, "write", counting)
    return seen
