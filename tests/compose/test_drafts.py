"""Drafts from API input: attachments, collected field errors, limits."""

from __future__ import annotations

import base64

import pytest

from mailgate.compose.addresses import Address
from mailgate.compose.attachments import decode_attachment_content, parse_attachment
from mailgate.compose.drafts import make_draft
from mailgate.compose.limits import check_limits
from mailgate.compose.message import Attachment, Draft
from mailgate.errors import TooLarge, ValidationFailed


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_make_draft_from_api_input() -> None:
    draft = make_draft(
        from_="Acme <noreply@acme.test>",
        to=["a@x.test", {"email": "b@x.test", "name": "B"}],
        cc=[],
        bcc=["c@x.test"],
        reply_to="help@acme.test",
        subject="Hi",
        text="t",
        html="<p>h</p>",
        headers={"X-Campaign": "7"},
        attachments=[
            {"filename": "a.pdf", "content_type": "application/pdf", "content": b64(b"%PDF")},
            {"filename": "logo.png", "content_type": "image/png", "content": "", "content_id": "l"},
        ],
    )
    assert draft == Draft(
        from_=Address("noreply@acme.test", "Acme"),
        to=(Address("a@x.test"), Address("b@x.test", "B")),
        bcc=(Address("c@x.test"),),
        reply_to=(Address("help@acme.test"),),
        subject="Hi",
        text="t",
        html="<p>h</p>",
        headers={"X-Campaign": "7"},
        attachments=(
            Attachment("a.pdf", "application/pdf", b"%PDF"),
            Attachment("logo.png", "image/png", b"", "l"),
        ),
    )


def test_every_field_error_is_collected() -> None:
    with pytest.raises(ValidationFailed) as caught:
        make_draft(
            from_="not an address",
            to=["ok@x.test", "bad"],
            cc=[{"email": "c@x.test", "name": "C\r\n"}],
            reply_to="also bad",
            subject="s\n",
            text=5,
            headers={"Bcc": "x", "X-Campaign": "a\nb"},
            attachments=[{"filename": "../etc/passwd", "content": "!!"}],
        )
    assert type(caught.value) is ValidationFailed
    assert [e.field for e in caught.value.errors] == [
        "from",
        "to[1]",
        "cc[0].name",
        "reply_to",
        "subject",
        "text",
        "headers.Bcc",
        "headers.X-Campaign",
        "attachments[0].filename",
        "attachments[0].content",
    ]


def test_missing_parts_are_named() -> None:
    with pytest.raises(ValidationFailed) as caught:
        make_draft(from_=None, attachments="x")
    assert [e.field for e in caught.value.errors] == ["from", "to", "text", "attachments"]


def test_duplicate_content_ids() -> None:
    image = {"filename": "a.png", "content_type": "image/png", "content": "", "content_id": "x"}
    with pytest.raises(ValidationFailed) as caught:
        make_draft(from_="a@x.test", to="b@x.test", html="h", attachments=[image, image])
    assert [e.field for e in caught.value.errors] == ["attachments[1].content_id"]


BAD_ATTACHMENTS: list[tuple[object, str, str]] = [
    ({"filename": "a/b.txt", "content": ""}, "attachments[0].filename", "path separators"),
    ({"filename": "a\\b.txt", "content": ""}, "attachments[0].filename", "path separators"),
    ({"filename": "a\r\nb.txt", "content": ""}, "attachments[0].filename", "control"),
    ({"filename": "a\x00.txt", "content": ""}, "attachments[0].filename", "control"),
    ({"filename": "=?utf-8?q?a=0A?=", "content": ""}, "attachments[0].filename", "encoded-word"),
    ({"filename": "..", "content": ""}, "attachments[0].filename", "name a file"),
    ({"filename": " ", "content": ""}, "attachments[0].filename", "empty"),
    ({"filename": "x" * 256, "content": ""}, "attachments[0].filename", "255"),
    ({"content": ""}, "attachments[0].filename", "required"),
    (
        {"filename": "a", "content": "", "content_type": "pdf"},
        "attachments[0].content_type",
        "media",
    ),
    (
        {"filename": "a", "content": "", "content_type": "text/plain\r\nX: y"},
        "attachments[0].content_type",
        "media",
    ),
    (
        {"filename": "a", "content": "", "content_type": "multipart/mixed"},
        "attachments[0].content_type",
        "multipart",
    ),
    (
        {"filename": "a", "content": "", "content_type": "message/rfc822"},
        "attachments[0].content_type",
        "message",
    ),
    ({"filename": "a", "content": "", "content_id": "<x>"}, "attachments[0].content_id", "id"),
    ({"filename": "a", "content": "", "content_id": "a b"}, "attachments[0].content_id", "id"),
    ({"filename": "a", "content": "abc"}, "attachments[0].content", "base64"),
    ({"filename": "a", "content": "ab!="}, "attachments[0].content", "base64"),
    ({"filename": "a", "content": "YQ==YQ=="}, "attachments[0].content", "base64"),
    ({"filename": "a", "content": "-_-_"}, "attachments[0].content", "base64"),
    ({"filename": "a"}, "attachments[0].content", "base64"),
    ({"filename": "a", "content": "", "size": 1}, "attachments[0]", "unknown"),
    ("a.pdf", "attachments[0]", "object"),
]


@pytest.mark.parametrize(("value", "field", "message"), BAD_ATTACHMENTS)
def test_bad_attachments_name_the_field(value: object, field: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_attachment(value, index=0)
    assert [e.field for e in caught.value.errors] == [field]
    assert message in caught.value.errors[0].message


def test_attachment_defaults_and_line_broken_base64() -> None:
    data = bytes(range(256)) * 4
    wrapped = base64.encodebytes(data).decode().replace("\n", "\r\n")
    parsed = parse_attachment({"filename": "résumé.bin", "content": wrapped}, index=3)
    assert parsed == Attachment("résumé.bin", "application/octet-stream", data)


def test_attachment_too_large_is_413_before_decoding() -> None:
    with pytest.raises(TooLarge) as caught:
        make_draft(
            from_="a@x.test",
            to="b@x.test",
            text="t",
            attachments=[{"filename": "a", "content": b64(bytes(2000))}],
            max_attachment_bytes=1000,
        )
    assert caught.value.status == 413
    assert [e.field for e in caught.value.errors] == ["attachments[0].content"]
    assert decode_attachment_content(b64(bytes(1000)), field="f", max_bytes=1000) == bytes(1000)


def draft(**changes: object) -> Draft:
    base: dict[str, object] = {"from_": Address("a@x.test"), "to": (Address("b@x.test"),)}
    return Draft(**{**base, **changes})  # type: ignore[arg-type]


def test_recipient_limit_counts_to_cc_and_bcc() -> None:
    many = tuple(Address(f"u{n}@x.test") for n in range(3))
    check_limits(draft(to=many[:1], cc=many[1:2], bcc=many[2:]), max_recipients=3, max_bytes=10)
    with pytest.raises(ValidationFailed) as caught:
        check_limits(draft(to=many, bcc=many[:1]), max_recipients=3, max_bytes=10)
    assert type(caught.value) is ValidationFailed
    assert [e.field for e in caught.value.errors] == ["to"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"text": "x" * 101}, "text"),
        ({"text": "é" * 51}, "text"),
        ({"text": "x" * 60, "html": "y" * 60}, "html"),
        (
            {
                "text": "x" * 10,
                "attachments": (
                    Attachment("a", "application/pdf", bytes(50)),
                    Attachment("b", "application/pdf", bytes(50)),
                ),
            },
            "attachments[1].content",
        ),
    ],
)
def test_size_limit_names_the_field_that_goes_over(changes: dict[str, object], field: str) -> None:
    with pytest.raises(TooLarge) as caught:
        check_limits(draft(**changes), max_recipients=10, max_bytes=100)
    assert caught.value.status == 413
    assert [e.field for e in caught.value.errors] == [field]


def test_within_limits() -> None:
    check_limits(draft(text="x" * 50, html="y" * 50), max_recipients=1, max_bytes=100)
