"""The process log never shows a URL's query or user info (webhook URLs carry tokens)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from mailgate import logs

HOOK = "https://hooks.example.com/mailgate?token=hook-secret-123&x=1"


@pytest.fixture
def configured(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """``logs.configure`` as a Mailgate process runs it; the logging setup is restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    quiet = ("httpx", "httpcore", "alembic.runtime.migration", "alembic.runtime.plugins")
    levels = {name: logging.getLogger(name).level for name in quiet}
    logs.configure(fmt="text", level="INFO")
    try:
        yield
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def test_http_client_info_lines_do_not_show_webhook_urls(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    with httpx.Client(transport=transport) as client:
        assert client.post(HOOK, content=b"{}").status_code == 204
    logging.getLogger("mailgate.test").info("still logging")
    err = capsys.readouterr().err
    assert "still logging" in err
    assert "hook-secret-123" not in err


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"webhook {HOOK} answered 500", "hook-secret-123"),
        ("POST https://user:pa55@hooks.example.com/x failed", "pa55"),
        ('HTTP Request: GET http://127.0.0.1:8080/cb?sig=abc%20def "HTTP/1.1 200 OK"', "abc"),
    ],
)
def test_warnings_naming_a_url_lose_its_query_and_user_info(
    configured: None, capsys: pytest.CaptureFixture[str], line: str, secret: str
) -> None:
    logging.getLogger("mailgate.worker").warning(line)
    err = capsys.readouterr().err
    assert secret not in err
    assert "[redacted]" in err
    assert "hooks.example.com" in err or "127.0.0.1:8080/cb?" in err
