"""Form guidance of the web UI: errors that say which rule, where, and what was not kept."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.ui.test_forms import CANARY, SMTP, _owner, field_error


async def test_number_attributes_are_markup_not_quoted_text(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    r = await b.get("/t/acme/settings/servers/new")
    assert 'step="any" min="1"' in r.text
    assert "&quot;" not in re.search(r'<input id="f-timeout_seconds"[^>]*>', r.text).group(0)


async def test_an_error_in_the_advanced_section_opens_it(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "timeout_seconds": "soon"})
    assert r.status_code == 422
    assert "must be a number" in field_error(r.text, "timeout_seconds")
    assert "<details open>" in r.text
    ok = await b.get("/t/acme/settings/servers/new")
    assert "<details open>" not in ok.text


async def test_a_typed_secret_that_was_not_kept_is_said_so(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "port": "25"})
    assert r.status_code == 422
    assert CANARY not in r.text
    block = re.search(r'data-field="password".*?</div>', r.text, re.S).group(0)
    assert "What you typed here was not kept: type it again." in block
    no_secret = await b.post("/t/acme/settings/servers/new", {**SMTP, "port": "25", "password": ""})
    assert "was not kept" not in no_secret.text


async def test_a_bad_stage_name_is_shown_at_the_field_with_its_rule(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    r = await b.post("/t/acme/settings/stages", {"name": "Bad Stage!"})
    assert r.status_code == 422
    assert "<h1>Email Settings</h1>" in r.text  # the page with its navigation, not a bare error
    error = re.search(r'<p class="field-error" id="new-stage-error"[^>]*>([^<]*)</p>', r.text)
    assert error and "lower-case letters" in error.group(1)
    assert 'value="Bad Stage!"' in r.text
    assert 'aria-invalid="true"' in r.text


async def test_a_bad_app_name_says_the_rule(browser_factory: Any, api: httpx.AsyncClient) -> None:
    b = await _owner(browser_factory, api)
    r = await b.post("/t/acme/apps", {"name": "no spaces allowed"})
    assert r.status_code == 422
    error = re.search(r'<p class="field-error" id="app-name-error"[^>]*>([^<]*)</p>', r.text)
    assert error and "Some fields need attention" not in error.group(1)
    assert len(error.group(1)) > 10


async def test_a_bad_test_list_address_names_its_line(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    assert (await b.post("/t/acme/apps", {"name": "billing"})).status_code == 303
    text = "qa@acme.test\n\ndev@acme.test\nnot-an-address"
    r = await b.post("/t/acme/apps/billing/test-list", {"addresses": text, "active": "on"})
    assert r.status_code == 422
    assert field_error(r.text, "addresses").startswith("line 4 (not-an-address): ")
