"""Templates: rendering, escaping, the sandbox, and errors that name the field."""

from __future__ import annotations

import pytest

from mailgate.compose.templates import (
    MAX_OUTPUT_CHARS,
    RenderedTemplate,
    TemplateCache,
    TemplateSource,
    check_template,
    render_template,
)
from mailgate.errors import TooLarge, ValidationFailed

INVITE = TemplateSource(
    subject="Welcome, {{ first_name }}!",
    text="Hello {{ first_name }},\n\n{{ note }}\n{% for item in items %}- {{ item }}\n{% endfor %}",
    html="<p>Hello {{ first_name }}</p><p>{{ note }}</p>",
)
VARIABLES: dict[str, object] = {
    "first_name": "Jane",
    "note": "Tom & Jerry <b>say</b> \"hi\" & 'bye'",
    "items": ["a", "b"],
}


def fields(error: ValidationFailed) -> list[str]:
    return [item.field for item in error.errors]


def refused(source: TemplateSource, variables: dict[str, object] | None = None) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        render_template(source, VARIABLES if variables is None else variables, name="invite")
    assert caught.value.status in (413, 422)
    return caught.value


def test_renders_every_part() -> None:
    rendered = render_template(INVITE, VARIABLES, name="invite")
    assert rendered == RenderedTemplate(
        subject="Welcome, Jane!",
        text="Hello Jane,\n\nTom & Jerry <b>say</b> \"hi\" & 'bye'\n- a\n- b\n",
        html=(
            "<p>Hello Jane</p><p>Tom &amp; Jerry &lt;b&gt;say&lt;/b&gt; &#34;hi&#34; "
            "&amp; &#39;bye&#39;</p>"
        ),
    )


def test_subject_is_not_escaped_and_parts_are_optional() -> None:
    rendered = render_template(
        TemplateSource(subject="{{ a }} & {{ b }}"), {"a": "<x>", "b": "Q&A"}, name="s"
    )
    assert rendered == RenderedTemplate(subject="<x> & Q&A", text=None, html=None)


def test_html_can_opt_out_of_escaping_explicitly() -> None:
    source = TemplateSource(subject="s", html="{{ snippet | safe }}")
    assert render_template(source, {"snippet": "<b>ok</b>"}, name="s").html == "<b>ok</b>"


def test_missing_variable_names_template_and_variable() -> None:
    error = refused(INVITE, {"note": "", "items": []})
    assert error.status == 422
    assert fields(error) == ["template.variables.first_name"]
    assert "invite" in error.errors[0].message
    assert "first_name" in error.errors[0].message


def test_missing_variable_in_body_only() -> None:
    error = refused(INVITE, {"first_name": "Jane", "items": []})
    assert fields(error) == ["template.variables.note"]


def test_missing_attribute_of_a_variable() -> None:
    error = refused(TemplateSource(subject="{{ user.name }}"), {"user": {}})
    assert fields(error) == ["template.variables"]
    assert "name" in error.detail


def test_defined_test_lets_a_variable_be_optional() -> None:
    source = TemplateSource(subject="{% if title is defined %}{{ title }}{% else %}Hi{% endif %}")
    assert render_template(source, {}, name="s").subject == "Hi"


@pytest.mark.parametrize(
    ("source", "field"),
    [
        (TemplateSource(subject="{{ unclosed"), "template.subject"),
        (TemplateSource(subject="s", text="{% for x in y %}"), "template.text"),
        (TemplateSource(subject="s", html="{% endif %}"), "template.html"),
    ],
)
def test_syntax_error_names_the_part(source: TemplateSource, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_template(source, name="invite")
    assert fields(caught.value) == [field]
    assert "line 1" in caught.value.errors[0].message
    assert fields(refused(source)) == [field]


def test_check_template_lists_every_bad_part() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_template(TemplateSource(subject="{{", text="{%", html="ok"), name="t")
    assert fields(caught.value) == ["template.subject", "template.text"]
    check_template(INVITE)


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ first_name.__class__ }}",
        "{{ items['__len__'] }}",
        "{{ self._TemplateReference__context }}",
        "{{ namespace.__init__ }}",
        "{{ cycler|attr('__init__')|attr('__globals__') }}",
        "{{ ''|attr('__class__') }}",
    ],
)
def test_private_names_are_refused_before_rendering(expression: str) -> None:
    source = TemplateSource(subject="s", text=expression)
    with pytest.raises(ValidationFailed) as caught:
        check_template(source, name="invite")
    assert fields(caught.value) == ["template.text"]
    assert "starting with _" in caught.value.errors[0].message
    assert fields(refused(source)) == ["template.text"]


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''|attr('_' ~ '_class__') }}",
        "{{ '{0.__class__}'.format(first_name) }}",
        "{{ items.append('x') }}",
        "{{ 10 ** (10 ** 10) }}",
        "{{ 'x' * 10 ** 8 }}",
        "{{ 10 ** 8 * [1] }}",
    ],
)
def test_sandbox_refuses_at_render_time(expression: str) -> None:
    source = TemplateSource(subject="s", text=expression)
    check_template(source)
    error = refused(source)
    assert fields(error) == ["template"]
    assert "sandbox" in error.detail
    assert VARIABLES["items"] == ["a", "b"]


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("{{ 1 / 0 }}", "template"),
        ("{{ first_name + 1 }}", "template"),
        ("{{ range(10 ** 7) | list }}", "template"),
        ("{{ items[5] }}", "template.variables"),
    ],
)
def test_expression_errors_are_validation_errors(expression: str, field: str) -> None:
    assert fields(refused(TemplateSource(subject="s", text=expression))) == [field]


def test_output_size_is_bounded() -> None:
    source = TemplateSource(subject="s", text="{% for i in range(3000) %}{{ big }}{% endfor %}")
    with pytest.raises(TooLarge) as caught:
        render_template(source, {"big": "x" * 1000}, name="big")
    assert caught.value.status == 413
    assert fields(caught.value) == ["template.text"]
    assert str(MAX_OUTPUT_CHARS) in caught.value.detail


@pytest.mark.parametrize("value", ["Jane\r\nBcc: all@x.test", "Jane\n", "\rJane"])
def test_line_break_in_subject_names_the_variable(value: str) -> None:
    error = refused(INVITE, {**VARIABLES, "first_name": value})
    assert fields(error) == ["template.variables.first_name"]


def test_line_break_from_the_template_itself_names_subject() -> None:
    error = refused(TemplateSource(subject="Hello\n{{ first_name }}"))
    assert fields(error) == ["subject"]


def test_rendered_subject_is_validated_like_any_subject() -> None:
    error = refused(TemplateSource(subject="{{ first_name }}"), {"first_name": "a\x00b"})
    assert fields(error) == ["subject"]


def test_line_breaks_are_fine_in_text_and_html() -> None:
    source = TemplateSource(subject="s", text="{{ v }}", html="{{ v }}")
    rendered = render_template(source, {"v": "a\r\nb"}, name="s")
    assert (rendered.text, rendered.html) == ("a\r\nb", "a\r\nb")


def test_cache_compiles_each_source_once() -> None:
    cache = TemplateCache(maxsize=2)
    first = cache.get(INVITE, name="invite")
    assert cache.get(TemplateSource(INVITE.subject, INVITE.text, INVITE.html), name="x") is first
    assert len(cache) == 1
    changed = TemplateSource(INVITE.subject, INVITE.text, INVITE.html + " ")
    assert cache.get(changed, name="invite") is not first
    # Parts are kept apart in the key: moving text between parts is a different source.
    assert cache.get(TemplateSource("ab", "c"), name="t") is not cache.get(
        TemplateSource("a", "bc"), name="t"
    )
    assert len(cache) == 2
    rendered = render_template(INVITE, VARIABLES, name="invite", cache=cache)
    assert rendered.subject == "Welcome, Jane!"


def test_invalid_source_is_not_cached() -> None:
    cache = TemplateCache()
    with pytest.raises(ValidationFailed):
        cache.get(TemplateSource("{{"), name="t")
    assert len(cache) == 0
