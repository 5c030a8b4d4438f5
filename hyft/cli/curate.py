"""`hyft curate`: being built (see the open issue); registered so the CLI layout is visible."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("curate")
    def _curate() -> None:
        """Not available yet in this build."""
        typer.echo("hyft curate is not available yet in this build", err=True)
        raise typer.Exit(2)
