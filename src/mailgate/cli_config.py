"""``mailgate config apply FILE`` and ``mailgate config export``: configuration as a file.

``import-codestream`` reads the ``emailDeliveryService`` section of CodeStream's
``codestream-services-config.json`` and applies it as a tenant's mail servers the same way.
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
    from mailgate.services import codestream_import as codestream_import_t
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


@config_app.command("import-codestream")
def import_codestream(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="CodeStream's codestream-services-config.json."),
    ],
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", metavar="SLUG", help="The tenant to import into.")
    ],
    tenant_name: Annotated[
        str | None,
        typer.Option("--tenant-name", help="The name of a new tenant (default: the slug)."),
    ] = None,
    prefix: Annotated[
        str,
        typer.Option("--prefix", help="Servers are named PREFIX-smtp and PREFIX-sendgrid."),
    ] = "codestream",
    default: Annotated[
        bool,
        typer.Option(
            "--default/--no-default",
            help="Make the server CodeStream sends through the tenant's default.",
        ),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Apply without asking for confirmation.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Also write the servers as a Mailgate configuration file (.json or .toml), "
            "secrets as references.",
        ),
    ] = None,
) -> None:
    """Create or update a tenant's mail servers from CodeStream's outbound email settings.

    The secrets are stored encrypted in Mailgate, never written to a file; the references
    that stand for them in a configuration file are printed."""
    from mailgate.services import codestream_import, config_export, config_file, config_plan

    errors = Console(stderr=True)
    out = Console()
    if output is not None and output.suffix.lower() not in (".json", ".toml"):
        errors.print("[bold red]error:[/] --output must name a .json or .toml file")
        raise typer.Exit(EXIT_INVALID)
    settings = _settings(errors)
    done: list[Change] = []
    imported: codestream_import.Imported | None = None

    async def go(raw: dict[str, object]) -> tuple[list[Change], bool]:
        nonlocal imported
        ctx = await boot.open_context(settings, auto_upgrade=not dry_run, create_key=not dry_run)
        try:
            principal = _principal()
            state = await config_export.read_state(
                ctx, principal, tenant, secrets=True, missing_ok=True
            )
            name = state.caller.tenant.name if state.caller else (tenant_name or tenant)
            imported = codestream_import.translate(
                raw, tenant=tenant, tenant_name=name, prefix=prefix, make_default=default
            )
            specs = config_file.parse(
                imported.document, environ=imported.secret_values, base_dir=file.parent
            )
            changes = config_plan.plan(specs, {tenant: state}, prune=False)
            _print_import(out, imported, changes, dry_run=dry_run)
            writes = any(c.action is not config_plan.Action.UNCHANGED for c in changes)
            if dry_run or not writes:
                return changes, False
            if not yes and not typer.confirm("Apply these changes?", default=False):
                return changes, False
            await config_plan.apply(ctx, principal, changes, {tenant: state}, done=done.append)
            return changes, True
        finally:
            await ctx.db.dispose()

    try:
        raw = codestream_import.read_file(file)
        changes, applied = asyncio.run(go(raw))
    except typer.Abort:
        errors.print("nothing was changed (no answer; pass --yes to apply without asking)")
        raise typer.Exit(EXIT_INVALID) from None
    except ConfigurationError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from None
    except RequestError as exc:
        if done:
            print_changes(out, done, title="Applied before the error")
        where = exc.errors[0].field if exc.errors else ""
        message = exc.errors[0].message if exc.errors else exc.detail
        if imported is not None and where:
            where = codestream_import.source_of(where, imported)
        errors.print(
            Text(f"error: {where}: {message}" if where else f"error: {message}", style="bold red")
        )
        raise typer.Exit(EXIT_INVALID) from None
    assert imported is not None
    if output is not None:
        fmt = output.suffix.lower().lstrip(".")
        try:
            text = config_file.dumps_document(imported.document, fmt=fmt)
        except ConfigurationError as exc:
            errors.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(EXIT_CONFIGURATION) from None
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output} (secrets as references, never their values)")
    writes = any(c.action.value != "unchanged" for c in changes)
    if dry_run:
        out.print("dry run: nothing was changed")
    elif applied:
        out.print(f"applied: {file.name} imported into tenant {tenant}", highlight=False)
    elif writes:
        out.print("nothing was changed")
    raise typer.Exit(EXIT_OK)


def _print_import(
    console: Console,
    imported: codestream_import_t.Imported,
    changes: list[Change],
    *,
    dry_run: bool,
) -> None:
    """The notes, the plan and the secret references of an import."""
    for note in imported.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    title = "Plan (dry run: nothing is changed)" if dry_run else "Plan"
    print_changes(console, changes, title=title)
    if not imported.secrets:
        return
    table = Table(
        title="Secrets: stored encrypted in Mailgate; in a configuration file, use the reference",
        title_justify="left",
    )
    for column in ("server", "field", "reference", "taken from"):
        table.add_column(column, overflow="fold")
    for ref in imported.secrets:
        table.add_row(ref.server, ref.field, f'{{"env": "{ref.env}"}}', ref.source)
    console.print(table)
    console.print(
        "To manage these servers with `mailgate config apply`, set each variable to its "
        'secret (or use a {"file": ...} reference).',
        highlight=False,
    )


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
