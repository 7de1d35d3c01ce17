"""Strict email addresses: parsing, validation and their wire forms.

Contract: :func:`parse_address` accepts exactly one mailbox, given as

* a bare addr-spec string ``a@x.test``;
* a name-addr string ``Name <a@x.test>`` or ``"Doe, Jane" <a@x.test>`` (RFC 5322 section
  3.4: a phrase of atoms and quoted strings, then one angle-addr, nothing after it);
* a mapping ``{"email": "a@x.test", "name": "Jane"}`` (``name`` optional).

Everything else is refused with :class:`~mailgate.errors.ValidationFailed` naming the field:
groups, comments, several addresses, trailing text, quoted local parts, domain literals,
RFC 2047 encoded-words inside the addr-spec (RFC 2047 section 5), and control characters
anywhere (see :mod:`mailgate.compose.controls`). Nothing is repaired;
``email.utils.parseaddr`` is deliberately not used because it silently "fixes" input.

The addr-spec is checked by ``email_validator`` (RFC 5321/5322 syntax, IDNA 2008 domains,
RFC 6531 internationalised local parts). Plain ASCII addresses take a fast path that accepts
only a strict subset of what ``email_validator`` accepts and normalises them identically
(domain lower-cased); anything outside that subset goes to ``email_validator``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from email_validator import EmailNotValidError, validate_email

from mailgate.compose.controls import control_problem, encoded_word_problem, has_encoded_word
from mailgate.errors import FieldError, ValidationFailed

#: Longest display name accepted, in characters (keeps every header line far below 998).
MAX_NAME_LENGTH: Final = 256

# RFC 5322 section 3.2.3 atext, joined by single dots (dot-atom-text); at most 64 octets
# (RFC 5321 section 4.5.3.1.1).
_FAST_LOCAL: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
# RFC 1123 section 2.1 host names: LDH labels of at most 63 octets, at least two labels and
# a top-level label ending in a letter (as email_validator requires).
_FAST_DOMAIN: Final = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z])?"
)
_FAST_ADDRESS: Final = re.compile(rf"({_FAST_LOCAL})@({_FAST_DOMAIN})")

# Names email_validator treats specially; such addresses leave the fast path.
_SPECIAL_TLDS: Final = frozenset({"arpa", "invalid", "local", "localhost", "onion"})
_CASE_INSENSITIVE_LOCALS: Final = frozenset(
    [
        "info",
        "marketing",
        "sales",
        "support",
        "abuse",
        "noc",
        "security",
        "postmaster",
        "hostmaster",
        "usenet",
        "news",
        "webmaster",
        "www",
        "uucp",
        "ftp",
    ]
)

# RFC 5322 section 3.2.3 specials; an unquoted display-name word may hold none of them (the
# period is allowed as obs-phrase, RFC 5322 section 4.1).
_PHRASE_SPECIALS: Final = frozenset('()<>[]:;@\\,"')


@dataclass(frozen=True, slots=True)
class Address:
    """One validated mailbox: a normalised address and an optional display name.

    ``email`` is email_validator's normalised form (Unicode domain, NFC local part).
    Construct through :func:`parse_address`; direct construction trusts the caller.
    """

    email: str
    name: str | None = None

    @property
    def local_part(self) -> str:
        return self.email.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]

    @property
    def needs_smtputf8(self) -> bool:
        """Whether the local part is non-ASCII, so SMTPUTF8 (RFC 6531) is required."""
        return not self.local_part.isascii()

    @property
    def ascii_email(self) -> str | None:
        """The address with an IDNA A-label domain, or None when the local part is non-ASCII.

        This is the form for servers without SMTPUTF8 (RFC 5890/5891).
        """
        local, _, domain = self.email.rpartition("@")
        if not local.isascii():
            return None
        if domain.isascii():
            return self.email
        return f"{local}@{_a_label(domain)}"

    @property
    def wire_email(self) -> str:
        """The form to put on the wire: the ASCII form when one exists, else UTF-8."""
        return self.ascii_email or self.email


@lru_cache(maxsize=1024)
def _a_label(domain: str) -> str:
    """The IDNA 2008 A-label form of a validated Unicode domain (RFC 5891 section 4)."""
    result = validate_email(
        f"x@{domain}", check_deliverability=False, allow_smtputf8=True, test_environment=True
    )
    return result.ascii_domain


def _fast_addr_spec(value: str) -> str | None:
    """The normalised form of a plain ASCII address in the fast-path subset, else None.

    The pattern admits no whitespace or control character, so a match needs no other check.
    """
    fast = _FAST_ADDRESS.fullmatch(value)
    if fast is None or len(value) > 254 or has_encoded_word(value):
        return None
    local, domain = fast.groups()
    if (
        len(local) > 64
        or "--" in domain
        or domain.rpartition(".")[2].lower() in _SPECIAL_TLDS
        or local.lower() in _CASE_INSENSITIVE_LOCALS
    ):
        return None
    return f"{local}@{domain.lower()}"


def _validate_addr_spec(value: str) -> str:
    """The normalised addr-spec, or ValueError with a reason a person can act on."""
    if has_encoded_word(value):
        # A reader may decode it, showing another address than the one mail goes to.
        raise ValueError(
            "must not contain an RFC 2047 encoded-word: they are not allowed in an "
            "addr-spec (RFC 2047 section 5)"
        )
    fast = _fast_addr_spec(value)
    if fast is not None:
        return fast
    try:
        # RFC 2606 ".test" domains are what development and demo tenants use.
        result = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=True,
            test_environment=True,
            strict=True,
        )
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address: {exc}") from exc
    return result.normalized


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read an RFC 5322 section 3.2.4 quoted-string opening at ``start``; return text, end."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(chars), i + 1
        if char == "\\":
            i += 1
            if i == len(text):
                break
            char = text[i]
        chars.append(char)
        i += 1
    raise ValueError("has an unterminated quoted display name")


def _split_name_addr(text: str) -> tuple[str | None, str]:
    """Split ``Name <addr>`` into its display name and addr-spec (RFC 5322 section 3.4)."""
    words: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == " ":
            i += 1
        elif char == '"':
            word, i = _read_quoted(text, i)
            words.append(word)
        elif char == "<":
            break
        else:
            end = i
            while end < len(text) and text[end] != " " and text[end] not in _PHRASE_SPECIALS:
                end += 1
            if end == i:
                raise ValueError(
                    f"has {text[i]!r} in its display name; quote the display name or give "
                    "exactly one address"
                )
            words.append(text[i:end])
            i = end
    close = text.find(">", i)
    if i == len(text) or close == -1:
        raise ValueError("must be an address or 'Name <address>'")
    if close != len(text) - 1:
        raise ValueError("has text after the closing '>': give exactly one address")
    addr = text[i + 1 : close]
    if "<" in addr:
        raise ValueError("must hold exactly one '<address>'")
    name = " ".join(words)
    return (name or None), addr


def _check_name(name: str) -> str | None:
    """The display name to keep (None when blank), or ValueError."""
    problem = control_problem(name) or encoded_word_problem(name)
    if problem is not None:
        raise ValueError(f"display name {problem}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"display name is longer than {MAX_NAME_LENGTH} characters")
    stripped = name.strip(" ")
    return stripped or None


def _parse_string(value: str) -> Address:
    fast = _fast_addr_spec(value)
    if fast is not None:
        return Address(fast)
    problem = control_problem(value)
    if problem is not None:
        raise ValueError(problem)
    text = value.strip(" ")
    if "<" in text or ">" in text or '"' in text:
        name, addr = _split_name_addr(text)
    else:
        name, addr = None, text
    return Address(_validate_addr_spec(addr), None if name is None else _check_name(name))


def parse_address(value: object, *, field: str) -> Address:
    """Validate one mailbox given as a string or an ``{email, name}`` mapping.

    Raises :class:`ValidationFailed` naming ``field`` (``field.email`` / ``field.name`` for
    the parts of a mapping). An :class:`Address` is already validated and is returned as is.
    """
    if isinstance(value, Address):
        return value
    if isinstance(value, str):
        try:
            return _parse_string(value)
        except ValueError as exc:
            raise ValidationFailed.field(field, str(exc)) from None
    if isinstance(value, Mapping):
        unknown = set(value) - {"email", "name"}
        if unknown:
            raise ValidationFailed.field(field, f"unknown keys: {', '.join(sorted(unknown))}")
        email, name = value.get("email"), value.get("name")
        if not isinstance(email, str):
            raise ValidationFailed.field(f"{field}.email", "is required and must be a string")
        if name is not None and not isinstance(name, str):
            raise ValidationFailed.field(f"{field}.name", "must be a string")
        problem = control_problem(email)
        try:
            if problem is not None:
                raise ValueError(problem)
            normalized = _validate_addr_spec(email)
        except ValueError as exc:
            raise ValidationFailed.field(f"{field}.email", str(exc)) from None
        try:
            return Address(normalized, None if name is None else _check_name(name))
        except ValueError as exc:
            raise ValidationFailed.field(f"{field}.name", str(exc)) from None
    raise ValidationFailed.field(field, "must be an address string or an {email, name} object")


def parse_addresses(values: object, *, field: str) -> tuple[Address, ...]:
    """Validate a list of mailboxes; all invalid entries are reported (``to[0]``, ``to[3]``).

    ``None`` is the empty list; a single string or mapping is a list of one, reported under
    ``field`` itself.
    """
    if values is None:
        return ()
    if isinstance(values, str | Mapping):
        return (parse_address(values, field=field),)
    if not isinstance(values, list | tuple):
        raise ValidationFailed.field(field, "must be a list of addresses")
    parsed: list[Address] = []
    errors: list[FieldError] = []
    for index, value in enumerate(values):
        try:
            parsed.append(parse_address(value, field=f"{field}[{index}]"))
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(f"{field}: invalid addresses", errors=errors)
    return tuple(parsed)
