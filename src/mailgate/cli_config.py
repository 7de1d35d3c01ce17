"""``mailgate config apply FILE`` and ``mailgate config export``: configuration as a file.

``apply`` reads a JSON or TOML file of tenants, stages, mail servers, email accounts and
apps (secrets as ``{"env": ...}`` or ``{"file": ...}`` references), then creates what is
missing and updates what differs through the services, as the instance admin with the audit
actor ``cli:config``; ``--prune`` also deletes what the file does not name, ``--dry-run``
only shows the plan. ``export`` writes the same kind of file, with references in place of
secrets. See docs/config-file.md.

Exit codes: 0 done, 1 the file is invalid or a change was refused (the message names the
path in the file), 2 it could not run (invalid settings, database or keys).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mailgate import logs
from mailgate.errors import ConfigurationError, RequestError
from mailgate.services import boot
from mailgate.settings import Settings

if TYPE_CHECKING:
    from mailgate.domain.roles import Principal
    from mailgate.services.config_file import TenantSpec
    from mailgate.services.config_plan import Change

config_app = typer.Typer(
    help="Configuration as a file: tenants, stages, servers, accounts and apps.",
    no_args_is_help=True,
)

ACTOR = "cli:config"
EXIT_OK = 0
EXIT_INVALID = 1
EXIT_CONFIGURATION = 2

_STYLES = {"create": "green", "update": "yellow", "delete": "bold red", "unchanged": "dim"}


def _settings(errors: Console) -> Settings:
    try:
        settings = Settings()
    except Exception as exc:  # pydantic reports every invalid variable at once
        errors.print(f"[bold red]error:[/] invalid settings: {exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from None
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    return settings


def _principal() -> Principal:
    from mailgate.domain.roles import Principal, PrincipalKind

    return Principal(kind=PrincipalKind.INSTANCE_ADMIN, actor=ACTOR)


@config_app.callback()
def config() -> None:
    """Configuration files."""


@config_app.command("apply")
def apply_file(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A .json or .toml configuration file.")
    ],
    prune: Annotated[
        bool,
        typer.Option(
            "--prune", help="Delete stages, servers, accounts and apps the file does not name."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
) -> None:
    """Create what is missing and update what differs, so the instance matches FILE."""
    from mailgate.services import config_export, config_file, config_plan

    errors = Console(stderr=True)
    settings = _settings(errors)
    done: list[Change] = []

    async def go(specs: dict[str, TenantSpec]) -> list[Change]:
        # A dry run neither migrates the database nor creates a key file.
        ctx = await boot.open_context(settings, auto_upgrade=not dry_run, create_key=not dry_run)
        try:
            principal = _principal()
            states = {
                slug: await config_export.read_state(
                    ctx, principal, slug, secrets=True, missing_ok=True
                )
                for slug in specs
            }
            changes = config_plan.plan(specs, states, prune=prune)
            if not dry_run:
                await config_plan.apply(ctx, principal, changes, states, done=done.append)
            return changes
        finally:
            await ctx.db.dispose()

    try:
        # Secrets are resolved here, before the database is opened: a missing variable
        # stops the apply before anything changes.
        specs = config_file.parse(
            config_file.read_document(file), environ=os.environ, base_dir=file.parent
        )
        changes = asyncio.run(go(specs))
    except ConfigurationError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from None
    except RequestError as exc:
        if done:
            print_changes(Console(), done, title="Applied before the error")
        errors.print(Text(f"error: {exc.detail}", style="bold red"))
        raise typer.Exit(EXIT_INVALID) from None
    title = "Plan (dry run: nothing was changed)" if dry_run else f"Applied {file.name}"
    print_changes(Console(), changes, title=title)
    raise typer.Exit(EXIT_OK)


@config_app.command("export")
def export_file(
    tenant: Annotated[
        list[str] | None,
        typer.Option("--tenant", "-t", metavar="SLUG", help="Export this tenant (repeat)."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="json or toml (default: from the -o file name, else json)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the configuration of every tenant (or those named) as a file, secrets as
    environment-variable references, never their values."""
    from mailgate.services import config_export, config_file

    errors = Console(stderr=True)
    chosen = fmt or (output.suffix.lstrip(".").lower() if output else "") or "json"
    if chosen not in ("json", "toml"):
        errors.print(f"[bold red]error:[/] --format must be json or toml, not {chosen!r}")
        raise typer.Exit(EXIT_INVALID)
    settings = _settings(errors)

    async def go() -> str:
        ctx = await boot.open_context(settings)
        try:
            doc = await config_export.export_document(ctx, _principal(), tenant or None)
        finally:
            await ctx.db.dispose()
        return config_file.dumps_document(doc, fmt=chosen)

    try:
        text = asyncio.run(go())
    except ConfigurationError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from None
    except RequestError as exc:
        errors.print(f"[bold red]error:[/] {exc.detail}")
        raise typer.Exit(EXIT_INVALID) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        errors.print(f"wrote {output}")


def print_changes(console: Console, changes: list[Change], *, title: str) -> None:
    """The changes as a table, then one line of counts."""
    table = Table(title=title, title_justify="left")
    for column in ("action", "object", "tenant", "name", "changes"):
        table.add_column(column, overflow="fold")
    for change in changes:
        detail = ", ".join(change.fields)
        if change.note:
            detail = f"{detail} ({change.note})" if detail else change.note
        table.add_row(
            Text(change.action.value, style=_STYLES[change.action.value]),
            change.kind,
            change.tenant,
            change.name,
            detail,
        )
    console.print(table)
    counts = {a: sum(1 for c in changes if c.action.value == a) for a in _STYLES}
    console.print(", ".join(f"{n} {a}" for a, n in counts.items()), highlight=False)
