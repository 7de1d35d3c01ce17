"""The server form follows the server schema: bad hosts and options are shown on their inputs."""

from __future__ import annotations

from typing import Any

import httpx

from tests.ui.test_forms import SMTP, _owner, _servers, field_error


async def test_a_host_with_a_scheme_is_shown_on_the_host_input(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "host": "smtp://mail.example.com"})
    assert r.status_code == 422
    assert "without a scheme" in field_error(r.text, "host")
    assert await _servers(api) == []


async def test_unknown_and_invalid_options_are_shown_on_the_options_input(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    form = {**SMTP, "options": "helo=mx.example.com"}
    r = await b.post("/t/acme/settings/servers/new", form)
    assert r.status_code == 422
    assert field_error(r.text, "options").startswith("helo: unknown option")
    form = {**SMTP, "options": "ehlo_name=relay_01.corp"}
    r = await b.post("/t/acme/settings/servers/new", form)
    assert r.status_code == 422
    assert field_error(r.text, "options").startswith("ehlo_name: must be a domain name")
    assert await _servers(api) == []
    form = {**SMTP, "options": "ehlo_name=mx.example.com\ndisable_pipelining=true"}
    assert (await b.post("/t/acme/settings/servers/new", form)).status_code == 303
    (server,) = await _servers(api)
    assert server["options"] == {"ehlo_name": "mx.example.com", "disable_pipelining": "true"}
