"""A hostile template cannot freeze the instance: renders run in child processes under a
time and memory budget, over budget is a 422 naming the part, and ``/healthz`` keeps
answering meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from mailgate.compose import render_pool
from mailgate.compose.render_pool import RenderPool
from mailgate.compose.templates import TemplateSource
from mailgate.errors import ValidationFailed
from tests.delivery.conftest import T, Tenant
from tests.delivery.test_templates_send import put_template, queued

NESTED_LOOPS = (
    "{% for i in range(20000) %}{% for j in range(20000) %}{{ '' }}{% endfor %}{% endfor %}"
)
DOUBLING = (
    '{% set ns = namespace(s="x") %}'
    "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[RenderPool]:
    budgeted = RenderPool(size=1, seconds=1.0, memory_bytes=512 * 1024 * 1024)
    monkeypatch.setattr(render_pool, "_DEFAULT", budgeted)
    yield budgeted
    budgeted.close()


async def test_hostile_template_is_refused_while_healthz_answers(
    tenant: Tenant, pool: RenderPool
) -> None:
    await put_template(tenant, "hostile", subject="Report", text=NESTED_LOOPS)
    send = asyncio.create_task(
        tenant.send(subject=None, text=None, template={"name": "hostile", "variables": {}})
    )
    slowest = 0.0
    probes = 0
    while not send.done():
        began = time.monotonic()
        r = await tenant.client.get("/healthz")
        slowest = max(slowest, time.monotonic() - began)
        probes += 1
        assert r.status_code == 200
        await asyncio.sleep(0.05)
    assert probes >= 5, "the render ended before the probes could tell"
    assert slowest < 1.0, f"/healthz took {slowest:.2f} s during the render"
    r = await send
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {
            "field": "template.text",
            "message": "template 'hostile' did not render within 1 s "
            "(loops or macros that do too much work)",
        }
    ]
    assert await queued(tenant) == 0
    # The killed child is replaced: the next render works.
    await put_template(tenant, "fine", subject="Hi {{ name }}", text="Hello {{ name }}.")
    r = await tenant.send(
        subject=None, text=None, template={"name": "fine", "variables": {"name": "Ann"}}
    )
    assert r.status_code == 202, r.text


async def test_hostile_template_in_a_batch_is_refused_alone(
    tenant: Tenant, pool: RenderPool
) -> None:
    await put_template(tenant, "hostile", subject="Report", text=NESTED_LOOPS)
    await put_template(tenant, "fine", subject="Hi {{ name }}", text="Hello {{ name }}.")
    items = [
        {"to": ["a@example.com"], "template": {"name": "hostile", "variables": {}}},
        {"to": ["b@example.com"], "template": {"name": "fine", "variables": {"name": "Bo"}}},
    ]
    r = await tenant.client.post(
        f"{T}/messages/batch", json={"messages": items}, headers=tenant.sender
    )
    assert r.status_code == 200, r.text
    first, second = r.json()["items"]
    assert first["status"] == 422
    assert [e["field"] for e in first["errors"]] == ["template.text"]
    assert second["status"] == 202


def test_a_template_that_exhausts_memory_is_refused() -> None:
    # A generous time budget: this is about the memory limit, on a machine that may be busy.
    pool = RenderPool(size=1, seconds=30.0, memory_bytes=256 * 1024 * 1024)
    try:
        source = TemplateSource(subject="Big", html=DOUBLING)
        with pytest.raises(ValidationFailed) as caught:
            pool.render(source, {}, name="big")
        assert caught.value.status == 422
        assert [(e.field, e.message) for e in caught.value.errors] == [
            ("template.html", "template 'big' needs more memory than a render may use")
        ]
        # The child that ran out is replaced.
        assert pool.render(TemplateSource(subject="ok"), {}, name="small").subject == "ok"
    finally:
        pool.close()


def test_render_errors_keep_their_fields(pool: RenderPool) -> None:
    with pytest.raises(ValidationFailed) as caught:
        pool.render(TemplateSource(subject="Hi {{ name }}"), {}, name="greet")
    assert [e.field for e in caught.value.errors] == ["template.variables.name"]
    rendered = pool.render(TemplateSource(subject="Hi {{ name }}"), {"name": "Ann"}, name="greet")
    assert rendered.subject == "Hi Ann"
