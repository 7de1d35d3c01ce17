"""JSON request values that cannot be kept: lone surrogates, NUL, NaN and Infinity.

Python's JSON reader accepts ``"\\ud800"`` (half of a UTF-16 surrogate pair) and the bare
words ``NaN``, ``Infinity`` and ``-Infinity``. None of them is JSON text that can be stored
and sent back: a lone surrogate cannot be encoded as UTF-8 (every later read of the value
would fail), and RFC 8259 has no non-finite numbers (a database stores them as null, or
refuses them). NUL (``"\\u0000"``) is valid JSON, but PostgreSQL stores no NUL in text, and
no header, address, template or message text needs one. Request bodies are checked here,
before any other validation, so that such a value is refused with a 422 naming its field.
"""

from __future__ import annotations

import math

from mailgate.compose.controls import has_surrogate


def json_value_problem(value: object, *, strings_checked: bool = False) -> tuple[str, str] | None:
    """(where, why) for the first value inside ``value`` (parsed JSON) that cannot be kept as
    JSON text, or None. ``where`` is its place (``a.b[2]``, empty for ``value`` itself); the
    reason never repeats the bad text. With ``strings_checked`` (the strings and keys are
    known to hold no lone surrogate and no NUL) only numbers are checked."""
    if strings_checked:
        return _number_problem(value)
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                return path, "holds a lone UTF-16 surrogate, which is not Unicode text"
            if "\x00" in item:
                return path, "holds a NUL character (U+0000), which cannot be stored"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "NaN and Infinity are not JSON numbers"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and (has_surrogate(key) or "\x00" in key):
                    return path, "has a key holding a lone UTF-16 surrogate or a NUL"
                stack.append((f"{path}.{key}" if path else str(key), inner))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", inner) for i, inner in enumerate(item))
    return None


def _number_problem(value: object) -> tuple[str, str] | None:
    """The first non-finite number inside ``value``; places are spelled only when one is
    found (the search itself builds no paths)."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return json_value_problem(value)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None
