"""Helper verbs: ``hyft env`` (versions for bug reports) and ``hyft ls`` (what is available)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """Print versions, git commit and devices (paste this into bug reports)."""
        from hyft.experiments.manifest import environment_report

        report = environment_report()
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        typer.echo(f"python      {report['python']}  ({report['platform']})")
        for package, version in report["packages"].items():
            typer.echo(f"{package:<14}{version or '-'}")
        typer.echo(f"git commit  {report['git_commit'] or '-'}")
        typer.echo(
            f"devices     {', '.join(report['cuda_devices']) or 'CPU only'} ({report['cpu_threads']} threads)"
        )

    @app.command("ls")
    def ls() -> None:
        """List adapter methods and example configs."""
        from typing import get_args

        from hyft.adapters.config import Method

        typer.echo("methods: " + ", ".join(get_args(Method)))
        configs = Path("configs")
        if configs.is_dir():
            typer.echo("configs: " + ", ".join(sorted(p.name for p in configs.glob("*.yaml"))))
