"""The ``mailgate`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="Mailgate: a self-hosted, multi-tenant outbound email gateway.")


@app.callback()
def _root() -> None:
    """Mailgate command line."""


def main() -> None:
    """Console-script entry point."""
    app()
