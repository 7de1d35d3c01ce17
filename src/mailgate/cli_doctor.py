"""``mailgate doctor``: check the instance as an operator would before a deploy.

In order: the settings load; the database answers and is at this Mailgate's schema; the
keys load and open every stored secret; every mail server builds into an engine; every
stage and the tenant default have a route; every sender domain has a usable DKIM key. Each
problem is printed with how to fix it. Nothing is written; no mail server is contacted.

Exit codes: 0 nothing is wrong, 1 something is (the output says what).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import typer

from mailgate.errors import ConfigurationError
from mailgate.services.doctor import CHECKS, Finding

EXIT_OK = 0
EXIT_PROBLEMS = 1


def _print(findings: Sequence[Finding], *, reached: Sequence[str]) -> None:
    for check in CHECKS:
        if check not in reached:
            typer.echo(f"[skip] {check}: not checked (fix the problems above first)")
            continue
        found = [f for f in findings if f.check == check]
        if not found:
            typer.echo(f"[ok]   {check}")
            continue
        for finding in found:
            typer.echo(f"[FAIL] {check}: {finding.subject}: {finding.problem}")
            typer.echo(f"       fix: {finding.fix}")
    total = len(findings)
    if total:
        typer.echo(f"{total} problem{'s' if total != 1 else ''} found.")
    else:
        typer.echo("No problems found.")


async def _run() -> tuple[list[Finding], list[str]]:
    """The findings and the checks that could run."""
    from mailgate.settings import Settings

    try:
        settings = Settings()
    except Exception as exc:  # pydantic reports every invalid variable at once
        fix = "correct the MAILGATE_* environment variables (docs/configuration.md)"
        return [Finding("settings", "settings", f"invalid: {exc}", fix)], ["settings"]

    from mailgate.services.context import Context, InstancePolicy
    from mailgate.services.doctor import examine
    from mailgate.storage import migrate
    from mailgate.storage.db import Database

    reached = ["settings", "database"]
    sqlite_file = settings.data_dir / "mailgate.db"
    if not settings.database_url and not sqlite_file.exists():
        # Opening SQLite would create an empty file: say so instead, and write nothing.
        fix = "run `mailgate db upgrade` (or start `mailgate serve`), or set MAILGATE_DATA_DIR"
        return [Finding("database", str(sqlite_file), "does not exist", fix)], reached
    db = Database(settings.effective_database_url)
    try:
        try:
            current = await migrate.current_revision(db)
        except Exception as exc:
            finding = Finding(
                "database",
                db.safe_url,
                f"cannot be read: {type(exc).__name__}: {exc}",
                "check MAILGATE_DATABASE_URL and that the database server is running",
            )
            return [finding], reached
        head = migrate.head_revision()
        if current != head:
            finding = Finding(
                "database",
                db.safe_url,
                f"is at schema {current or 'none'} but this Mailgate needs {head}",
                "run `mailgate db upgrade`",
            )
            return [finding], reached
        reached.append("keys")
        from mailgate.services.boot import secret_box

        try:
            box = secret_box(settings, create=False)
        except ConfigurationError as exc:
            fix = "restore the key file or set MAILGATE_SECRET_KEYS (docs/configuration.md)"
            return [Finding("keys", str(settings.key_file), str(exc), fix)], reached
        reached += ["secrets", "servers", "routes", "dkim"]
        ctx = Context(db=db, box=box, policy=InstancePolicy.from_settings(settings))
        return await examine(ctx), reached
    finally:
        await db.dispose()


def doctor() -> None:
    """Check settings, database, keys, mail servers, routes and DKIM keys before a deploy.

    Prints every problem with how to fix it; exit code 1 when anything is wrong.
    """
    findings, reached = asyncio.run(_run())
    _print(findings, reached=reached)
    raise typer.Exit(EXIT_PROBLEMS if findings else EXIT_OK)
