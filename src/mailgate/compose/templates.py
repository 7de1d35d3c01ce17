"""Message templates: subject, text and HTML rendered with sandboxed Jinja.

Contract of :func:`render_template`: the three parts of a :class:`TemplateSource` are
rendered with the caller's variables in Jinja's immutable sandbox, with undefined
variables an error; the HTML part is autoescaped, the text part and the subject are not.
Anything that goes wrong because of the template or the variables is a
:class:`~mailgate.errors.ValidationFailed` (422), never an unhandled exception:

* a missing variable names it: field ``template.variables.<name>``;
* a syntax error names the part: field ``template.subject``, ``template.text`` or
  ``template.html``, with the line;
* an attempt to reach Python internals (``_``-prefixed attributes, unsafe calls) is refused
  before rendering where it can be seen in the source, and by the sandbox otherwise:
  field ``template`` or ``template.<part>``;
* a subject that renders with a line break names the variable that brought it
  (``template.variables.<name>``) or ``subject``; the rendered subject then passes
  :func:`mailgate.compose.headers.validate_subject`;
* output over :data:`MAX_OUTPUT_CHARS` per part is a :class:`~mailgate.errors.TooLarge`.

Templates are compiled once per source: :class:`TemplateCache` keeps compiled templates
keyed on a SHA-256 of the source. :func:`check_template` validates a source when it is
saved. The sandbox does not bound CPU time or memory: a template with deeply nested loops
can run for seconds, so requests render through :mod:`mailgate.compose.render_pool`, which
runs this module's :func:`render_template` in child processes under a time and memory
budget.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailgate.compose.headers import validate_subject
from mailgate.errors import FieldError, TooLarge, ValidationFailed

#: Longest rendered part, in characters.
MAX_OUTPUT_CHARS: Final = 2_000_000
# A power or repetition whose result would exceed this many bits or items is refused.
_MAX_RESULT: Final = 1_000_000
_PARTS: Final = ("subject", "text", "html")
# Jinja's message for a missing top-level name (jinja2.runtime.Undefined).
_MISSING: Final = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """The Jinja sources of a template; a part that is None is not rendered."""

    subject: str
    text: str | None = None
    html: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    subject: str
    text: str | None
    html: str | None


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, also refusing powers and repetitions that would exhaust
    memory or CPU (``{{ 10 ** 10 ** 10 }}``, ``{{ 'x' * 10 ** 9 }}``)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        powers = operator == "**" and isinstance(left, int) and isinstance(right, int)
        if powers and right > 0 and max(left.bit_length(), 1) * right > _MAX_RESULT:
            raise SecurityError("the result of ** would be too large")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                repeated = isinstance(sequence, str | list | tuple) and isinstance(count, int)
                if repeated and len(sequence) * count > _MAX_RESULT:
                    raise SecurityError("the result of * would be too large")
        return super().call_binop(context, operator, left, right)


def _environment(*, autoescape: bool) -> _Sandbox:
    environment = _Sandbox(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )
    # lipsum generates text on request: no use in mail, and a cheap way to make a lot.
    environment.globals.pop("lipsum", None)
    return environment


_PLAIN: Final = _environment(autoescape=False)
_HTML: Final = _environment(autoescape=True)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """The compiled parts of one source, and the variables the subject refers to."""

    subject: Template
    text: Template | None
    html: Template | None
    subject_variables: frozenset[str]


def _private_name(tree: nodes.Template) -> str | None:
    """The first ``_``-prefixed attribute the source names as a constant: ``x._y``,
    ``x['_y']`` or ``x|attr('_y')`` (computed names are left to the sandbox)."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        named: object = None
        if isinstance(node, nodes.Getattr):
            named = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            named = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            named = first.value if isinstance(first, nodes.Const) else None
        if isinstance(named, str) and named.startswith("_"):
            return named
    return None


def _compile(source: TemplateSource, name: str) -> CompiledTemplate:
    """Every part compiled, or one error listing every part that does not compile."""
    errors: list[FieldError] = []
    if source.subject is None:
        errors.append(FieldError("template.subject", "is required"))
    compiled: dict[str, Template | None] = {}
    subject_variables: frozenset[str] = frozenset()
    for part in _PARTS:
        text = getattr(source, part)
        compiled[part] = None
        if text is None:
            continue
        if not isinstance(text, str):
            errors.append(FieldError(f"template.{part}", "must be a string"))
            continue
        environment = _HTML if part == "html" else _PLAIN
        try:
            tree = environment.parse(text)
            private = _private_name(tree)
            if private is not None:
                errors.append(
                    FieldError(
                        f"template.{part}",
                        f"template {name!r} refers to {private!r}: names starting with _ "
                        "are not accessible in templates",
                    )
                )
                continue
            compiled[part] = environment.from_string(tree)
        except TemplateSyntaxError as exc:
            errors.append(
                FieldError(f"template.{part}", f"template {name!r}, line {exc.lineno}: {exc}")
            )
            continue
        except TemplateError as exc:
            errors.append(FieldError(f"template.{part}", f"template {name!r}: {exc}"))
            continue
        if part == "subject":
            subject_variables = frozenset(meta.find_undeclared_variables(tree))
    if errors:
        fields = ", ".join(error.field for error in errors)
        raise ValidationFailed(f"invalid template {name!r}: {fields}", errors=errors)
    subject = compiled["subject"]
    if subject is None:
        raise ValidationFailed.field("template.subject", f"template {name!r} has no subject")
    return CompiledTemplate(subject, compiled["text"], compiled["html"], subject_variables)


def check_template(source: TemplateSource, *, name: str = "template") -> None:
    """Raise :class:`~mailgate.errors.ValidationFailed` when a part of ``source`` does not
    compile or reaches for a private name; for validating a template when it is saved."""
    _compile(source, name)


def _source_key(source: TemplateSource) -> str:
    digest = hashlib.sha256()
    for part in _PARTS:
        text = getattr(source, part)
        # A length prefix keeps "ab" + "c" apart from "a" + "bc"; None differs from "".
        encoded = b"-" if text is None else str(text).encode("utf-8", "surrogatepass")
        digest.update(f"{len(encoded)}:".encode() + encoded)
    return digest.hexdigest()


class TemplateCache:
    """Compiled templates by source hash, least recently used dropped past ``maxsize``.

    Safe to share between threads. A changed source hashes differently, so a new version
    of a template is compiled on its first use and the old one ages out.
    """

    def __init__(self, maxsize: int = 512) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[str, CompiledTemplate] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, source: TemplateSource, *, name: str) -> CompiledTemplate:
        """The compiled ``source``; raises like :func:`check_template` when it is invalid."""
        key = _source_key(source)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        compiled = _compile(source, name)
        with self._lock:
            self._entries[key] = compiled
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return compiled


_DEFAULT_CACHE: Final = TemplateCache()


def _render(template: Template, variables: Mapping[str, object], *, name: str, part: str) -> str:
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TooLarge.field(
                    f"template.{part}",
                    f"template {name!r} renders to more than {MAX_OUTPUT_CHARS} characters",
                )
            chunks.append(chunk)
    except SecurityError as exc:
        raise ValidationFailed.field(
            "template", f"template {name!r} ({part}) was refused by the sandbox: {exc}"
        ) from exc
    except UndefinedError as exc:
        missing = _MISSING.fullmatch(str(exc.message))
        if missing is None:
            raise ValidationFailed.field(
                "template.variables", f"template {name!r} ({part}): {exc.message}"
            ) from exc
        raise ValidationFailed.field(
            f"template.variables.{missing[1]}",
            f"template {name!r} needs the variable {missing[1]!r}",
        ) from exc
    except TemplateError as exc:
        raise ValidationFailed.field("template", f"template {name!r} ({part}): {exc}") from exc
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
        # Errors of the template's own expressions on the caller's values ({{ 1 / 0 }},
        # {{ total + "x" }}): a problem of this template and its variables, not a bug.
        raise ValidationFailed.field(
            "template", f"template {name!r} ({part}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    return "".join(chunks)


def _ignore(_: str) -> None:
    return None


def render_template(
    template: TemplateSource,
    variables: Mapping[str, object],
    *,
    name: str,
    cache: TemplateCache | None = None,
    on_part: Callable[[str], None] | None = None,
) -> RenderedTemplate:
    """The rendered parts of ``template`` (see the module contract). ``name`` identifies
    the template in error messages; ``cache`` defaults to a shared module-level one;
    ``on_part`` is told the name of each part before it is rendered.

    This renders in the calling thread, unbounded in time: requests render through
    :class:`mailgate.compose.render_pool.RenderPool`, which runs this under a budget."""
    compiled = (cache or _DEFAULT_CACHE).get(template, name=name)
    report = on_part or _ignore
    report("subject")
    subject = _render(compiled.subject, variables, name=name, part="subject")
    if "\r" in subject or "\n" in subject:
        culprits = sorted(
            variable
            for variable in compiled.subject_variables
            if variable in variables and re.search(r"[\r\n]", str(variables[variable]))
        )
        errors = [
            FieldError(f"template.variables.{variable}", "a line break cannot go in a subject")
            for variable in culprits
        ] or [FieldError("subject", f"template {name!r} renders a subject with a line break")]
        raise ValidationFailed(f"invalid subject from template {name!r}: line break", errors=errors)
    subject = validate_subject(subject)
    text = html = None
    if compiled.text:
        report("text")
        text = _render(compiled.text, variables, name=name, part="text")
    if compiled.html:
        report("html")
        html = _render(compiled.html, variables, name=name, part="html")
    return RenderedTemplate(subject=subject, text=text, html=html)
