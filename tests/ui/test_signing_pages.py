"""DKIM keys, S/MIME keystores and templates pages (routes, no browser)."""

from __future__ import annotations

import html as htmllib
import re
from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.ui.test_forms import _owner, field_error

T = "/api/v1/tenants/acme"


async def test_a_dkim_key_shows_the_dns_record_to_publish(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    empty = await b.get("/t/acme/dkim")
    assert "No DKIM key yet." in empty.text
    bad = await b.post(
        "/t/acme/dkim",
        {"domain": "example.com", "selector": "a b", "algorithm": "rsa", "bits": "2048"},
    )
    assert bad.status_code == 422
    assert "DNS labels" in field_error(bad.text, "selector")
    weak = await b.post(
        "/t/acme/dkim",
        {"domain": "example.com", "selector": "s1", "algorithm": "rsa", "bits": "1024"},
    )
    assert "2048" in field_error(weak.text, "bits")
    r = await b.post(
        "/t/acme/dkim", {"domain": "example.com", "selector": "mail2026", "algorithm": "ed25519"}
    )
    assert r.status_code == 303
    page = await b.get("/t/acme/dkim")
    assert 'value="mail2026._domainkey.example.com"' in page.text
    (key,) = (await api.get(f"{T}/dkim-keys", headers=ADMIN)).json()["items"]
    assert htmllib.escape(key["dns_record"]["value"], quote=False) in page.text
    assert "PRIVATE KEY" not in page.text


async def test_a_keystore_that_cannot_be_read_is_named_at_the_file(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    assert "No keystore yet." in (await b.get("/t/acme/keystores")).text
    files = {"file": ("bad.p12", b"not a keystore", "application/x-pkcs12")}
    r = await b.client.post(
        "/t/acme/keystores",
        data={"csrf_token": b.csrf, "name": "Signing", "kind": "pkcs12", "password": "pw-typed"},
        files=files,
    )
    assert r.status_code == 422, r.text
    assert "could not be read" in field_error(r.text, "file")
    assert "pw-typed" not in r.text and "was not kept" in r.text
    missing = await b.post("/t/acme/keystores", {"name": "Signing"})
    assert "choose a .p12" in field_error(missing.text, "file")


async def test_a_template_is_previewed_then_saved(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    assert "No template yet." in (await b.get("/t/acme/templates")).text
    form = {
        "name": "welcome",
        "subject": "Hello {{ name }}",
        "text": "Hi {{ name }}, order {{ order }}.",
        "html": "<p>Hi <b>{{ name }}</b></p>",
        "variables": '{"name": "Ada <3", "order": 42}',
        "action": "preview",
    }
    r = await b.post("/t/acme/templates/save", form)
    assert r.status_code == 200, r.text
    assert re.search(r'data-preview="subject">Hello Ada &lt;3<', r.text)
    assert "Hi Ada &lt;3, order 42." in r.text
    assert 'sandbox="" title="HTML preview" srcdoc="&lt;p&gt;Hi &lt;b&gt;Ada &amp;lt;3' in r.text
    assert (await api.get(f"{T}/templates/welcome", headers=ADMIN)).status_code == 404
    missing = await b.post("/t/acme/templates/save", {**form, "variables": '{"name": "Ada"}'})
    assert missing.status_code == 422 and "order" in field_error(missing.text, "variables")
    broken = await b.post(
        "/t/acme/templates/save", {**form, "subject": "{{ name", "action": "save"}
    )
    assert broken.status_code == 422 and field_error(broken.text, "subject")
    saved = await b.post("/t/acme/templates/save", {**form, "action": "save"})
    assert saved.status_code == 303
    got = (await api.get(f"{T}/templates/welcome", headers=ADMIN)).json()
    assert got["subject"] == "Hello {{ name }}" and got["version"] == 1
    listed = await b.get("/t/acme/templates")
    assert "/t/acme/templates/welcome" in listed.text
