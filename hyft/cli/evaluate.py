"""`hyft evaluate`: being built (see the open issue); registered so the CLI layout is visible."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def _evaluate() -> None:
        """Not available yet in this build."""
        typer.echo("hyft evaluate is not available yet in this build", err=True)
        raise typer.Exit(2)
