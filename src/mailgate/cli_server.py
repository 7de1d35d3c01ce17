"""``mailgate server test TENANT SERVER``: the connection test at the command line.

It reads the instance settings, opens the database (without migrating it), probes the saved
server through the instance network policy exactly as the API does, records the same audit
entry, and prints the report as a table or, with ``--json``, as the API's JSON body.

Exit codes: 0 when the test passed, 1 when it failed (the report says why), 2 when it could
not run (invalid settings, database or keys, unknown tenant or server).
"""

from __future__ import annotations

import asyncio
import json
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
    from mailgate.engines.probe_report import ProbeReport

server_app = typer.Typer(no_args_is_help=True)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


async def _test(settings: Settings, tenant: str, server: str) -> ProbeReport:
    # The probe stack is imported here so that other commands (workers) start faster.
    from mailgate.services.probe import Prober, find_server, operator_caller

    ctx = await boot.open_context(settings)
    try:
        who = await operator_caller(ctx, tenant)
        server_id = await find_server(ctx, who, server)
        return await Prober().test_saved(ctx, who, server_id)
    finally:
        await ctx.db.dispose()


@server_app.callback()
def server() -> None:
    """Mail servers."""


@server_app.command("test")
def run_test(
    tenant: Annotated[str, typer.Argument(metavar="TENANT", help="Tenant slug.")],
    server: Annotated[str, typer.Argument(metavar="SERVER", help="Mail server id or name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Test a saved mail server: connect, TLS, EHLO, STARTTLS, AUTH, QUIT. Sends no mail."""
    errors = Console(stderr=True)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic reports every invalid variable at once
        errors.print(f"[bold red]error:[/] invalid settings: {exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from None
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    try:
        report = asyncio.run(_test(settings, tenant, server))
    except (ConfigurationError, RequestError) as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(Console(), report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def _mark(ok: bool) -> Text:
    return Text("✓", style="green") if ok else Text("✗", style="bold red")


def _yes_no(value: bool) -> Text:
    return Text("yes", style="green") if value else Text("no", style="bold red")


def print_report(console: Console, report: ProbeReport) -> None:
    """Print ``report`` for a person: steps, TLS, certificate, server, result."""
    steps = Table(title="Connection test", title_justify="left")
    steps.add_column("", width=1)
    steps.add_column("step")
    steps.add_column("ms", justify="right")
    for step in report.steps:
        steps.add_row(_mark(step.ok), step.name.value, f"{step.ms:.1f}")
    console.print(steps)

    details = Table(show_header=False, box=None, padding=(0, 2))
    details.add_column(style="bold")
    details.add_column(overflow="fold")
    details.add_row("security", report.security.value)
    if report.tls is not None:
        details.add_row("TLS version", report.tls.version)
        details.add_row("cipher", report.tls.cipher)
        cert = report.tls.certificate
        if cert is not None:
            details.add_row("certificate subject", cert.subject)
            details.add_row("certificate issuer", cert.issuer)
            details.add_row("certificate expires", cert.not_after)
            details.add_row("certificate verified", _yes_no(cert.verified))
    if report.server is not None:
        details.add_row("banner", report.server.banner)
        details.add_row("extensions", ", ".join(report.server.extensions) or "-")
        details.add_row("AUTH mechanisms", ", ".join(report.server.auth_mechanisms) or "-")
    details.add_row("authenticated", _yes_no(report.authenticated))
    console.print(details)

    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    if report.error is None:
        console.print(Text("✓ the connection test passed; no message was sent", style="green"))
        return
    console.print(Text(f"✗ {report.error.code.value}: {report.error.message}", style="bold red"))
    console.print(Text(f"hint: {report.error.hint}", style="red"))
