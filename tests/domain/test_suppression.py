"""The pure suppression rules: who is left out, and the CSV form of a list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailgate.domain.suppression import (
    Reason,
    Source,
    Suppression,
    export_csv,
    parse_csv,
    split_recipients,
)
from mailgate.errors import ValidationFailed

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def entry(
    email: str, *, app_id: str | None = None, expires: datetime | None = None, **kw: object
) -> Suppression:
    return Suppression(
        id=kw.pop("id", f"id-{email}"),  # type: ignore[arg-type]
        tenant_id="t",
        email=email,
        reason=Reason.HARD_BOUNCE,
        source=Source.BOUNCE,
        created_at=NOW - timedelta(days=1),
        app_id=app_id,
        expires_at=expires,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("entries", "app_id", "kept", "left_out"),
    [
        ([], None, ("a@x.test", "B@x.test"), ()),
        ([entry("b@x.test")], None, ("a@x.test",), ("B@x.test",)),
        ([entry("b@x.test", app_id="billing")], None, ("a@x.test", "B@x.test"), ()),
        ([entry("b@x.test", app_id="billing")], "billing", ("a@x.test",), ("B@x.test",)),
        ([entry("b@x.test", app_id="other")], "billing", ("a@x.test", "B@x.test"), ()),
        ([entry("b@x.test", expires=NOW)], None, ("a@x.test", "B@x.test"), ()),
        (
            [entry("b@x.test", expires=NOW + timedelta(seconds=1))],
            None,
            ("a@x.test",),
            ("B@x.test",),
        ),
        ([entry("a@x.test"), entry("b@x.test")], None, (), ("a@x.test", "B@x.test")),
    ],
)
def test_split_recipients(
    entries: list[Suppression], app_id: str | None, kept: tuple[str, ...], left_out: tuple[str, ...]
) -> None:
    remaining, suppressed = split_recipients(
        ("a@x.test", "B@x.test"), entries, app_id=app_id, now=NOW
    )
    assert remaining == kept
    assert tuple(s.email for s in suppressed) == left_out


def test_a_tenant_wide_entry_is_named_before_an_apps_own() -> None:
    mine = entry("b@x.test", app_id="billing", id="app-entry")
    everyone = entry("b@x.test", id="tenant-entry")
    for order in ([mine, everyone], [everyone, mine]):
        _, [found] = split_recipients(["b@x.test"], order, app_id="billing", now=NOW)
        assert found.entry.id == "tenant-entry"


def test_export_guards_against_spreadsheet_formulas_and_reads_back() -> None:
    e = entry("=cmd@x.test", note="+SUM(A1)", expires=NOW + timedelta(days=3))
    text = export_csv([e])
    lines = text.splitlines()
    assert lines[0] == "email,reason,app,created_at,expires_at,source_message_id,note"
    assert lines[1].startswith("'=cmd@x.test,hard_bounce,,2026-12-04T09:00:00+00:00,")
    assert "'+SUM(A1)" in lines[1]
    [row] = parse_csv(text)
    assert (row.email, row.reason, row.note) == ("=cmd@x.test", Reason.HARD_BOUNCE, "+SUM(A1)")
    assert row.expires_at == NOW + timedelta(days=3)


def test_parse_csv_defaults_and_lowercases() -> None:
    rows = parse_csv("\ufeffEmail,App\r\nBob@X.test,billing\r\n\r\ncarol@x.test,\r\n")
    assert [(r.email, r.reason, r.app) for r in rows] == [
        ("bob@x.test", Reason.MANUAL, "billing"),
        ("carol@x.test", Reason.MANUAL, None),
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "file"),
        ("address\na@x.test\n", "file"),
        ("email,reason\na@x.test,spam\n", "line 2: reason"),
        ("email\nnot-an-address\n", "line 2: email"),
        ("email,expires_at\na@x.test,tomorrow\n", "line 2: expires_at"),
    ],
)
def test_parse_csv_names_the_bad_field(text: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_csv(text)
    assert caught.value.errors[0].field == field
