"""The connection-test modules' peer: a CA, and an SMTP server on loopback that offers
STARTTLS with a certificate for 127.0.0.1 and asks for AUTH."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines.probe_support import SmtpServer, loopback_cert
from tests.support.tls import TestCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def smtp(ca: TestCA) -> Iterator[SmtpServer]:
    with SmtpServer(mode="starttls", cert=loopback_cert(ca), auth=True) as server:
        yield server
