"""Timestamps written by the bulk statements read back like SQLAlchemy's own (SQLite text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailgate.storage.bulk import Bulk


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_sqlite_time_text_is_naive_utc_with_microseconds(value: datetime) -> None:
    expected = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert Bulk(None, dialect="sqlite").time(value) == expected
    assert Bulk(None, dialect="postgresql").time(value) is value
