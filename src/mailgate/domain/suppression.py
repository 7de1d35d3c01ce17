"""Suppression lists: addresses a tenant (or one of its apps) must not send to.

Pure values and rules, no IO:

* An entry names an address (compared case-insensitively), a reason (:class:`Reason`), the
  message that caused it (hard bounces and complaints), when it was made and, optionally,
  when it expires. An entry without an app applies to every app of the tenant; an entry
  with an app applies to that app's messages only.
* :func:`split_recipients` is the acceptance check: the recipients a message may still go
  to, and the suppressed ones with the entry that suppresses each. It runs on the routed
  recipients, so the test-list redirection comes first and test addresses are checked too.
* :func:`export_csv` / :func:`parse_csv` are the CSV form of a list (export and import).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from mailgate.errors import FieldError, ValidationFailed


class Reason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


class Source(StrEnum):
    """Where an entry came from."""

    API = "api"
    IMPORT = "import"
    BOUNCE = "bounce"  # a DSN or quoted bounce found in a synced inbox
    COMPLAINT = "arf"  # an ARF feedback report found in a synced inbox
    SENDGRID = "sendgrid"  # the SendGrid Event Webhook


#: The scope stored for entries that apply to every app of the tenant.
TENANT_SCOPE = "*"
#: Longest accepted address (RFC 5321 section 4.5.3.1.3 allows 254 in a path).
MAX_EMAIL = 320
MAX_NOTE = 500
#: Rows one CSV import may hold.
MAX_IMPORT_ROWS = 50_000
CSV_COLUMNS = ("email", "reason", "app", "created_at", "expires_at", "source_message_id", "note")


@dataclass(frozen=True, slots=True)
class Suppression:
    """One entry of a tenant's suppression list."""

    id: str
    tenant_id: str
    email: str
    reason: Reason
    source: Source
    created_at: datetime
    app_id: str | None = None
    app: str | None = None
    source_message_id: str | None = None
    note: str | None = None
    expires_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def applies_to(self, app_id: str | None) -> bool:
        return self.app_id is None or self.app_id == app_id

    def describe(self) -> str:
        """One line naming the entry, for replies and logs (never a secret in it)."""
        scope = f" for app {self.app!r}" if self.app else ""
        return (
            f"suppressed{scope}: {self.reason.value} since "
            f"{self.created_at.isoformat(timespec='seconds')} (entry {self.id})"
        )


@dataclass(frozen=True, slots=True)
class SuppressedRecipient:
    """A recipient left out of a message, and the entry that suppressed it."""

    email: str
    entry: Suppression


def normalise_email(value: str) -> str:
    """The form addresses are stored and compared in: trimmed and lower-cased."""
    return value.strip().lower()


def scope_of(app_id: str | None) -> str:
    return app_id or TENANT_SCOPE


def split_recipients(
    recipients: Sequence[str],
    entries: Iterable[Suppression],
    *,
    app_id: str | None,
    now: datetime,
) -> tuple[tuple[str, ...], tuple[SuppressedRecipient, ...]]:
    """The recipients that may receive a message of ``app_id``, and the suppressed ones.

    An expired entry suppresses nothing; a tenant-wide entry wins over an app's own (it is
    the broader one); recipients keep their order.
    """
    best: dict[str, Suppression] = {}
    for entry in entries:
        if not entry.is_active(now) or not entry.applies_to(app_id):
            continue
        key = normalise_email(entry.email)
        held = best.get(key)
        if held is None or (held.app_id is not None and entry.app_id is None):
            best[key] = entry
    kept: list[str] = []
    suppressed: list[SuppressedRecipient] = []
    for recipient in recipients:
        found = best.get(normalise_email(recipient))
        if found is None:
            kept.append(recipient)
        else:
            suppressed.append(SuppressedRecipient(email=recipient, entry=found))
    return tuple(kept), tuple(suppressed)


# CSV ---------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A value that a spreadsheet will not run as a formula (OWASP "CSV injection")."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else ""


def export_csv(entries: Iterable[Suppression]) -> str:
    """The list as CSV with a header row (:data:`CSV_COLUMNS`); times in UTC ISO 8601."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow(
            [
                _cell(e.email),
                e.reason.value,
                _cell(e.app or ""),
                _time(e.created_at),
                _time(e.expires_at),
                e.source_message_id or "",
                _cell(e.note or ""),
            ]
        )
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One row of an import, checked (the address is checked again by the service)."""

    line: int
    email: str
    reason: Reason
    app: str | None
    expires_at: datetime | None
    note: str | None


def _parse_time(text: str, field: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed.field(field, f"{text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_csv(text: str, *, default_reason: Reason = Reason.MANUAL) -> list[ImportRow]:
    """Rows of a CSV with a header naming at least ``email``; other known columns are
    ``reason``, ``app``, ``expires_at`` and ``note`` (the rest, such as ``created_at``, are
    ignored, so an export can be imported again). Every problem is collected and raised
    as one ValidationFailed whose fields are ``line N: column``."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValidationFailed.field(
            "file", "is empty; a header row naming 'email' is needed"
        ) from None
    except csv.Error as exc:
        raise ValidationFailed.field("file", f"is not CSV: {exc}") from None
    if "email" not in header:
        raise ValidationFailed.field("file", "the header row names no 'email' column")
    rows: list[ImportRow] = []
    errors: list[FieldError] = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(rows) >= MAX_IMPORT_ROWS:
                raise ValidationFailed.field("file", f"at most {MAX_IMPORT_ROWS} rows per import")
            cells: Mapping[str, str] = {
                name: (values[i].strip() if i < len(values) else "")
                for i, name in enumerate(header)
            }
            try:
                rows.append(_row(line, cells, default_reason))
            except ValidationFailed as exc:
                errors += exc.errors
    except csv.Error as exc:
        raise ValidationFailed.field("file", f"is not CSV: {exc}") from None
    if errors:
        shown = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        raise ValidationFailed(f"{len(errors)} rows cannot be imported: {shown}", errors=errors)
    return rows


def _row(line: int, cells: Mapping[str, str], default_reason: Reason) -> ImportRow:
    email = _uncell(cells.get("email", ""))
    if not email or "@" not in email or len(email) > MAX_EMAIL:
        raise ValidationFailed.field(f"line {line}: email", f"{email!r} is not an address")
    reason_text = cells.get("reason", "").lower()
    try:
        reason = Reason(reason_text) if reason_text else default_reason
    except ValueError:
        choices = ", ".join(r.value for r in Reason)
        raise ValidationFailed.field(
            f"line {line}: reason", f"{reason_text!r} is not one of {choices}"
        ) from None
    note = _uncell(cells.get("note", "")) or None
    if note is not None and len(note) > MAX_NOTE:
        raise ValidationFailed.field(f"line {line}: note", f"at most {MAX_NOTE} characters")
    return ImportRow(
        line=line,
        email=normalise_email(email),
        reason=reason,
        app=_uncell(cells.get("app", "")) or None,
        expires_at=_parse_time(cells.get("expires_at", ""), f"line {line}: expires_at"),
        note=note,
    )


def _uncell(value: str) -> str:
    """Undo :func:`_cell` for values read back from an export."""
    if value.startswith("'") and value[1:2] in _FORMULA_START:
        return value[1:]
    return value
