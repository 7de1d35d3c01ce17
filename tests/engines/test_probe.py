"""The connection probe against aiosmtpd on loopback: plain, STARTTLS, implicit TLS, AUTH.

Every test also checks that no mail transaction (MAIL, RCPT, DATA, BDAT) reached the server.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.engines.probe_support import HOST, PASSWORD, USER, SmtpServer, TestPKI, free_port

from mailgate.domain.servers import AuthKind, Engine, Security, TlsVersion
from mailgate.engines.config import Secret, ServerConfig
from mailgate.engines.probe import WARN_PLAINTEXT, WARN_UNVERIFIED, probe
from mailgate.engines.probe_report import ProbeReport
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy


class LoopbackResolver:
    """Resolves the test host name to 127.0.0.1 and nothing else."""

    async def resolve(self, host: str, port: int) -> list[str]:
        if host != HOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return ["127.0.0.1"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def dialer() -> GuardedDialer:
    return GuardedDialer(NetworkPolicy(["127.0.0.0/8"]), resolver=LoopbackResolver())


def config_for(server: SmtpServer, pki: TestPKI, **changes: Any) -> ServerConfig:
    security = {"plain": Security.NONE, "starttls": Security.STARTTLS, "tls": Security.TLS}
    base = ServerConfig(
        key="probe-test",
        host=HOST,
        port=server.port,
        security=security[server.mode],
        ca_certificates=pki.ca_pem,
        timeout_seconds=2.0,
    )
    return dataclasses.replace(base, **changes)


def with_password(**changes: Any) -> dict[str, Any]:
    return {"auth": AuthKind.PASSWORD, "username": USER, "password": Secret(PASSWORD), **changes}


@pytest.fixture
def starttls_server(pki: TestPKI) -> Iterator[SmtpServer]:
    with SmtpServer(mode="starttls", cert=pki.valid, auth=True) as server:
        yield server


def step_names(report: ProbeReport) -> list[str]:
    return [step.name.value for step in report.steps]


async def test_plain_server(pki: TestPKI, dialer: GuardedDialer) -> None:
    with SmtpServer(mode="plain") as server:
        report = await probe(config_for(server, pki), dialer=dialer)
    assert report.ok, report.error
    assert report.security.value == "insecure"
    assert report.tls is None
    assert report.server is not None
    assert HOST in report.server.banner
    assert "8BITMIME" in report.server.extensions
    assert report.authenticated is False
    assert step_names(report) == ["connect", "greeting", "ehlo", "quit"]
    assert WARN_PLAINTEXT in report.warnings
    assert server.commands == ["EHLO", "QUIT"]


async def test_starttls_with_auth(
    starttls_server: SmtpServer, pki: TestPKI, dialer: GuardedDialer
) -> None:
    report = await probe(config_for(starttls_server, pki, **with_password()), dialer=dialer)
    assert report.ok, report.error
    assert report.security.value == "STARTTLS"
    assert report.authenticated is True
    assert step_names(report) == [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "ehlo_after_tls",
        "auth",
        "quit",
    ]
    assert all(step.ok and step.ms >= 0 for step in report.steps)
    assert report.tls is not None
    assert report.tls.version in ("TLSv1.2", "TLSv1.3")
    assert report.tls.cipher
    certificate = report.tls.certificate
    assert certificate is not None
    assert certificate.verified is True
    assert certificate.subject == f"CN={HOST}"
    assert certificate.issuer == "CN=Mailgate Test CA"
    assert certificate.not_after.endswith("+00:00")
    assert report.server is not None
    # What was learnt before STARTTLS is discarded (RFC 3207 4.2): AUTH only appears after.
    assert "STARTTLS" not in report.server.extensions
    assert "AUTH" in report.server.extensions
    assert set(report.server.auth_mechanisms) >= {"PLAIN", "LOGIN"}
    assert report.warnings == ()
    assert starttls_server.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"]


async def test_implicit_tls_with_login(pki: TestPKI, dialer: GuardedDialer) -> None:
    with SmtpServer(mode="tls", cert=pki.valid, auth=True) as server:
        config = config_for(server, pki, **with_password(options={"disable_auth_plain": "true"}))
        report = await probe(config, dialer=dialer)
    assert report.ok, report.error
    assert report.security.value == "SMTPS"
    assert report.authenticated is True
    assert step_names(report) == ["connect", "tls", "greeting", "ehlo", "auth", "quit"]
    assert server.commands == ["EHLO", "AUTH", "QUIT"]
    assert server.transaction_commands() == []


async def test_unverified_certificate_is_reported(pki: TestPKI, dialer: GuardedDialer) -> None:
    with SmtpServer(mode="starttls", cert=pki.wrong_name) as server:
        config = config_for(server, pki, ca_certificates=None, verify_certificate=False)
        report = await probe(config, dialer=dialer)
    assert report.ok, report.error
    assert report.tls is not None
    assert report.tls.certificate is not None
    assert report.tls.certificate.verified is False
    assert WARN_UNVERIFIED in report.warnings
    assert report.to_dict()["tls"]["certificate"]["verified"] is False  # type: ignore[index]


async def test_report_json_shape(
    starttls_server: SmtpServer, pki: TestPKI, dialer: GuardedDialer
) -> None:
    report = await probe(config_for(starttls_server, pki, **with_password()), dialer=dialer)
    body = report.to_dict()
    assert set(body) == {
        "ok",
        "security",
        "tls",
        "server",
        "authenticated",
        "steps",
        "error",
        "warnings",
    }
    assert body["ok"] is True
    assert body["error"] is None
    assert set(body["tls"]) == {"version", "cipher", "certificate"}  # type: ignore[arg-type]
    assert set(body["server"]) == {"banner", "extensions", "auth_mechanisms"}  # type: ignore[arg-type]
    assert body["steps"][0] == {"name": "connect", "ok": True, "ms": report.steps[0].ms}  # type: ignore[index]
    assert PASSWORD not in repr(body)


def error_case(
    mode: str, cert: str | None, *, server: dict[str, Any] | None = None, **config: Any
) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
    return (mode, cert, server or {}, config)


ERROR_CASES = {
    "tls_on_plain_port": error_case("plain", None, security=Security.TLS),
    "starttls_on_tls_port": error_case(
        "tls", "valid", security=Security.STARTTLS, timeout_seconds=0.5
    ),
    "starttls_not_offered": error_case("plain", None, security=Security.STARTTLS),
    "certificate_untrusted": error_case("starttls", "valid", ca_certificates=None),
    "certificate_expired": error_case("tls", "expired"),
    "certificate_hostname_mismatch": error_case("starttls", "wrong_name"),
    "tls_version_too_low": error_case(
        "tls",
        "valid",
        server={"maximum_version": ssl.TLSVersion.TLSv1_2},
        min_tls_version=TlsVersion.V1_3,
    ),
    "auth_failed": error_case(
        "starttls", "valid", server={"auth": True}, **with_password(password=Secret("wrong"))
    ),
    "auth_not_offered": error_case(
        "plain", None, server={"auth": True}, **with_password(allow_insecure_auth=True)
    ),
    "insecure_auth_refused": error_case(
        "plain", None, server={"auth": True, "auth_require_tls": False}, **with_password()
    ),
}


@pytest.mark.parametrize("code", list(ERROR_CASES))
async def test_error_codes(code: str, pki: TestPKI, dialer: GuardedDialer) -> None:
    mode, cert_name, server_options, changes = ERROR_CASES[code]
    cert = getattr(pki, cert_name) if cert_name else None
    with SmtpServer(mode=mode, cert=cert, **server_options) as server:
        report = await probe(config_for(server, pki, **changes), dialer=dialer)
    assert report.error is not None
    assert report.error.code.value == code, report.error
    assert report.error.hint
    assert report.ok is False
    assert report.steps[-1].ok is False
    assert report.authenticated is False
    assert server.transaction_commands() == []
    if code == "insecure_auth_refused":
        assert "AUTH" not in server.commands  # credentials never left Mailgate


async def test_tls_on_plain_port_hint(pki: TestPKI, dialer: GuardedDialer) -> None:
    with SmtpServer(mode="plain") as server:
        config = config_for(server, pki, security=Security.TLS, port=server.port)
        report = await probe(config, dialer=dialer)
    assert report.error is not None
    assert "this server speaks plain SMTP — choose STARTTLS" in report.error.hint


async def test_connection_refused(pki: TestPKI, dialer: GuardedDialer) -> None:
    config = ServerConfig(key="k", host=HOST, port=free_port(), ca_certificates=pki.ca_pem)
    report = await probe(config, dialer=dialer)
    assert report.error is not None
    assert report.error.code.value == "connection_refused"
    assert step_names(report) == ["connect"]
    assert report.server is None


async def test_dns_failure(dialer: GuardedDialer) -> None:
    config = ServerConfig(key="k", host="nowhere.mailgate.test", port=587)
    report = await probe(config, dialer=dialer)
    assert report.error is not None
    assert report.error.code.value == "dns_failure"


@pytest.mark.parametrize(
    ("port", "allowed", "code"),
    [(25, ["127.0.0.0/8"], "port_25_refused"), (2525, [], "destination_refused")],
)
async def test_policy_refusals(port: int, allowed: list[str], code: str) -> None:
    class Refuse:
        attempts = 0

        async def connect(self, address: object, port: int) -> socket.socket:
            self.attempts += 1
            raise AssertionError("no connection may be attempted")

    connector = Refuse()
    dialer = GuardedDialer(NetworkPolicy(allowed), resolver=LoopbackResolver(), connector=connector)
    report = await probe(ServerConfig(key="k", host=HOST, port=port), dialer=dialer)
    assert report.error is not None
    assert report.error.code.value == code
    assert connector.attempts == 0
    assert step_names(report) == ["connect"]


async def test_other_engines_are_not_probed_over_smtp(dialer: GuardedDialer) -> None:
    # SendGrid and Graph are checked against their APIs (test_probe_http.py).
    report = await probe(ServerConfig(key="k", engine=Engine.CAPTURE), dialer=dialer)
    assert report.error is not None
    assert report.error.code.value == "engine_not_supported"
    assert report.steps == ()
