"""Hardening checks across the code (SPEC.md section 8).

* No module weakens TLS verification, except where a server is explicitly marked
  ``verify_certificate: false`` (``net/tls.py``) and one diagnostic handshake of the
  probe whose result is never trusted and after which nothing is sent.
* No module touches process-global trust (default HTTPS context, ``SSL_CERT_FILE``,
  ``certifi``, default verify paths, contexts shared between servers).
* Secret holders never show their values in ``repr``/``str``.
* A connection test never leaks the password (or its base64) into its report, its audit
  entry or any Mailgate log line, with AUTH PLAIN, AUTH LOGIN and a failing AUTH.

The source scans are AST-based; each rule is also run against a sample that breaks it, so a
scanner that finds nothing because it looks at nothing would fail here.
"""

from __future__ import annotations

import ast
import base64
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import mailgate
from mailgate.domain.servers import AuthKind, Security
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig
from mailgate.engines.probe import WARN_UNVERIFIED, probe
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.services.context import Context, InstancePolicy
from mailgate.settings import Settings
from mailgate.storage.secretbox import SecretBox, generate_key
from tests.config.helpers import new_tenant
from tests.config.test_probe_api import api_client, probe_app, smtp_body
from tests.conftest import ADMIN
from tests.engines.probe_support import PASSWORD, USER, SmtpServer
from tests.support.tls import TestCA

SRC = Path(mailgate.__file__).parent
BASE = "/api/v1/tenants/acme/mail-servers"

#: (module, function) pairs allowed to build an unverified context, and why.
UNVERIFIED_ALLOWED = {
    # Gated by `if not config.verify_certificate` (checked below).
    ("net/tls.py", "client_context"): "the server is marked verify_certificate: false",
    # Tells "this port speaks implicit TLS" apart from a silent server after a failure; it
    # completes a handshake, sends nothing and closes. Its result only picks a hint.
    ("engines/smtp/probe.py", "_handshake_succeeds"): "diagnostic handshake, nothing is sent",
}
_CONTEXT_FACTORIES = {"create_default_context", "SSLContext", "client_context"}
_TRUST_ENV = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}


# The scanner -----------------------------------------------------------------------------


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node.name
    return None


def _gated_by_verify_flag(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "verify_certificate" in ast.unparse(node.test):
            return True
    return False


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _touches_environ(node: ast.AST) -> bool:
    """Whether ``node`` refers to ``os.environ`` (or a bare ``environ`` imported from os)."""
    return any(
        (isinstance(n, ast.Attribute) and n.attr == "environ")
        or (isinstance(n, ast.Name) and n.id == "environ")
        for n in ast.walk(node)
    )


def unverified_tls(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Every place that disables certificate or host-name verification."""
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and _name(node) in (
            "CERT_NONE",
            "CERT_OPTIONAL",
            "_create_unverified_context",
            "_create_stdlib_context",
        ):
            found.append((node, _name(node)))
        elif isinstance(node, ast.ImportFrom) and node.module == "ssl":
            for alias in node.names:
                if alias.name in ("CERT_NONE", "CERT_OPTIONAL", "_create_unverified_context"):
                    found.append((node, f"from ssl import {alias.name}"))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if _name(target) == "check_hostname" and not (
                    isinstance(node.value, ast.Constant) and node.value.value is True
                ):
                    found.append((node, "check_hostname = False"))
        elif (
            isinstance(node, ast.Call)
            and _name(node.func) == "setattr"
            and any(
                isinstance(a, ast.Constant) and a.value in ("check_hostname", "verify_mode")
                for a in node.args
            )
        ):
            found.append((node, "setattr on verification"))
    return found


def global_trust(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Every place that changes trust for the whole process or shares one context."""
    found: list[tuple[ast.AST, str]] = []
    parents = _parents(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and _name(node) in (
            "_create_default_https_context",
            "set_default_verify_paths",
        ):
            found.append((node, _name(node)))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                modules.append(node.module or "")
            if any(m.split(".")[0] in ("certifi", "truststore") for m in modules):
                found.append((node, "certifi/truststore"))
        elif isinstance(node, ast.Constant) and node.value in _TRUST_ENV:
            found.append((node, f"environment variable {node.value}"))
        elif isinstance(node, ast.Call) and _name(node.func) in ("putenv", "setdefault", "update"):
            if _touches_environ(node.func) or _name(node.func) == "putenv":
                found.append((node, "process environment changed"))
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_touches_environ(t) for t in targets):
                found.append((node, "process environment changed"))
        elif (
            isinstance(node, ast.Call)
            and _name(node.func) in _CONTEXT_FACTORIES
            and _enclosing_function(node, parents) is None
        ):
            found.append((node, "TLS context shared by the module"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            cached = any(
                _name(d.func if isinstance(d, ast.Call) else d) in ("cache", "lru_cache")
                for d in node.decorator_list
            )
            builds = any(
                isinstance(c, ast.Call) and _name(c.func) in _CONTEXT_FACTORIES
                for c in ast.walk(node)
            )
            if cached and builds:
                found.append((node, "TLS context cached across servers"))
    return found


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), ast.parse(path.read_text(), filename=str(path))


# Source rules ----------------------------------------------------------------------------


def test_the_scan_sees_the_whole_package() -> None:
    names = {name for name, _ in _modules()}
    assert {"net/tls.py", "engines/smtp/probe.py", "services/probe.py", "cli.py"} <= names


def test_no_unverified_tls_outside_the_gated_places() -> None:
    problems: list[str] = []
    seen_allowed: set[tuple[str, str]] = set()
    for name, tree in _modules():
        parents = _parents(tree)
        for node, what in unverified_tls(tree):
            where = (name, _enclosing_function(node, parents) or "<module>")
            line = f"{name}:{getattr(node, 'lineno', '?')} {what}"
            if where not in UNVERIFIED_ALLOWED:
                problems.append(line)
                continue
            seen_allowed.add(where)
            if where[0] == "net/tls.py" and not _gated_by_verify_flag(node, parents):
                problems.append(f"{line} (not gated by verify_certificate)")
    assert problems == []
    assert ("net/tls.py", "client_context") in seen_allowed


def test_the_diagnostic_handshake_sends_nothing() -> None:
    tree = ast.parse((SRC / "engines/smtp/probe.py").read_text())
    function = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.AsyncFunctionDef) and n.name == "_handshake_succeeds"
    )
    calls = {_name(c.func) for c in ast.walk(function) if isinstance(c, ast.Call)}
    assert not calls & {"write", "command", "send", "sendall", "authenticate", "read_reply"}


def test_no_process_global_trust() -> None:
    problems = [
        f"{name}:{getattr(node, 'lineno', '?')} {what}"
        for name, tree in _modules()
        for node, what in global_trust(tree)
    ]
    assert problems == []


@pytest.mark.parametrize(
    "sample",
    [
        "import ssl\nctx = ssl._create_unverified_context()",
        "import ssl\ndef f(c):\n    c.verify_mode = ssl.CERT_NONE",
        "def f(c):\n    c.check_hostname = False",
        "from ssl import CERT_NONE",
        "def f(c):\n    setattr(c, 'check_hostname', False)",
    ],
)
def test_the_tls_scanner_catches(sample: str) -> None:
    assert unverified_tls(ast.parse(sample))


@pytest.mark.parametrize(
    "sample",
    [
        "import ssl\nssl._create_default_https_context = ssl._create_unverified_context",
        "import os\nos.environ['SSL_CERT_FILE'] = '/tmp/ca.pem'",
        "import os\nos.environ.setdefault('X', '1')",
        "from os import environ\nenviron['OTHER'] = '1'",
        "import certifi",
        "def f(c):\n    c.set_default_verify_paths()",
        "import ssl\nSHARED = ssl.create_default_context()",
        "import functools, ssl\n@functools.lru_cache\ndef c():\n    return ssl.SSLContext()",
    ],
)
def test_the_trust_scanner_catches(sample: str) -> None:
    assert global_trust(ast.parse(sample))


# Secret holders --------------------------------------------------------------------------


def test_secret_holders_never_show_values() -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    secret = Secret(canary)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s %r" % (secret, secret)]  # noqa: UP031
    config = ServerConfig(
        key="k",
        password=secret,
        api_key=Secret(canary),
        oauth=OAuthConfig(provider="google", client_secret=Secret(canary)),
    )
    shown += [repr(config), str(config)]
    key = generate_key()
    box = SecretBox([key])
    shown += [repr(box), str(box)]
    settings = Settings(secret_keys=[key], admin_token=canary, database_url="sqlite://")
    shown += [repr(settings), str(settings)]
    for text in shown:
        assert canary not in text and key not in text, text
    assert secret.reveal() == canary


# The connection test with a canary -------------------------------------------------------


def _forms(value: str) -> list[str]:
    """The value, its hex, and every 3-byte alignment of its base64 (as in AUTH payloads)."""
    raw = value.encode()
    forms = [value, raw.hex(), base64.b64encode(raw).decode()]
    forms += [base64.b64encode(raw[i:]).decode().rstrip("=")[:12] for i in range(3)]
    forms.append(base64.b64encode(f"\0{USER}\0{value}".encode()).decode())
    return forms


@pytest.fixture
async def api(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    ctx.policy = InstancePolicy(allowed_networks=("127.0.0.0/8",))
    async with api_client(probe_app(ctx)) as client:
        await new_tenant(client)
        yield client


@pytest.mark.parametrize(
    ("mechanism", "succeeds"),
    [("PLAIN", True), ("LOGIN", True), ("PLAIN", False), ("LOGIN", False)],
)
async def test_connection_test_never_leaks_the_password(
    api: httpx.AsyncClient,
    smtp: SmtpServer,
    ca: TestCA,
    caplog: pytest.LogCaptureFixture,
    mechanism: str,
    succeeds: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    # The server's own logger too: a submission listener started earlier in this process
    # sets it to WARNING.
    caplog.set_level(logging.DEBUG, logger="mail.log")
    password = PASSWORD if succeeds else f"canary-{secrets.token_hex(12)}"
    options = {"disable_auth_plain": "true"} if mechanism == "LOGIN" else {}
    body = smtp_body(smtp.port, ca.ca_pem, password=password, options=options)
    created = await api.post(BASE, json=body, headers=ADMIN)
    saved = await api.post(f"{BASE}/{created.json()['id']}/test", headers=ADMIN)
    unsaved = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    audit = await api.get("/api/v1/tenants/acme/audit", headers=ADMIN)

    for report in (saved.json(), unsaved.json()):
        assert report["ok"] is succeeds and report["authenticated"] is succeeds, report
        if not succeeds:
            assert report["error"]["code"] == "auth_failed"
            assert f"AUTH {mechanism}" in report["error"]["message"]
    # The server's own debug log shows which mechanism the probe used.
    assert any(r.getMessage().startswith(f"auth_{mechanism} ") for r in caplog.records)
    ours = [r for r in caplog.records if r.name != "mail.log"]  # aiosmtpd logs AUTH payloads
    assert any("mail_server.test" in r.getMessage() for r in ours)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    for text in (saved.text, unsaved.text, audit.text, logged):
        for form in _forms(password):
            assert form not in text


async def test_unverified_connection_carries_a_warning(smtp: SmtpServer) -> None:
    config = ServerConfig(
        key="unverified",
        host="127.0.0.1",
        port=smtp.port,
        security=Security.STARTTLS,
        verify_certificate=False,
        auth=AuthKind.PASSWORD,
        username=USER,
        password=Secret(PASSWORD),
        timeout_seconds=5.0,
    )
    report = await probe(config, dialer=GuardedDialer(NetworkPolicy(["127.0.0.0/8"])))
    assert report.ok and report.authenticated
    assert report.tls is not None and report.tls.certificate is not None
    assert report.tls.certificate.verified is False
    assert WARN_UNVERIFIED in report.warnings
    assert WARN_UNVERIFIED in report.to_dict()["warnings"]  # type: ignore[operator]
