"""``hyft run | train | validate | estimate config.yaml [key.sub=value ...]``:
the experiment runner's verbs."""

from __future__ import annotations

from pathlib import Path

import typer

from hyft.cli.errors import user_errors

CONFIG_ARG = typer.Argument(..., help="Run config (YAML or TOML), e.g. configs/demo.yaml.")
OVERRIDES = typer.Argument(None, help="key.sub=value overrides applied after the file.")


def load_run_config(path: Path, overrides: list[str] | None):
    from hyft.config import load_config
    from hyft.experiments.config import RunConfig

    return load_config(path, RunConfig, overrides or [])


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        config: Path = CONFIG_ARG,
        overrides: list[str] = OVERRIDES,
        max_cells: int = typer.Option(None, help="Stop after this many new cells (resume later)."),
    ) -> None:
        """Curate → train every cell → evaluate → report. Rerun the same command to resume."""
        with user_errors():
            from hyft.experiments.preflight import check_run_config
            from hyft.experiments.runner import run

            settings = load_run_config(config, overrides)
            check_run_config(settings, str(config))
            run_dir = run(settings, max_cells=max_cells)
            typer.echo(f"run folder: {run_dir}  (open {run_dir / 'report.md'})")

    @app.command("train")
    def train_command(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES) -> None:
        """Curate and train every cell of the config (no report). Adapters land in cells/<id>/adapter."""
        with user_errors():
            from hyft.experiments.preflight import check_run_config
            from hyft.experiments.runner import run

            settings = load_run_config(config, overrides)
            check_run_config(settings, str(config))
            run(settings, write_report=False)

    @app.command("validate")
    def validate_command(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES) -> None:
        """Check the config, its files and models without running anything heavy."""
        with user_errors():
            from hyft.experiments.preflight import check_run_config

            settings = load_run_config(config, overrides)
            check_run_config(settings, str(config))
            typer.echo(f"{config}: OK")

    @app.command("estimate")
    def estimate_command(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES) -> None:
        """Parameter counts and a memory/time estimate per cell, before anything heavy starts."""
        with user_errors():
            from hyft.experiments.estimate import estimate_table

            typer.echo(estimate_table(load_run_config(config, overrides)))
