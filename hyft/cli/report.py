"""`hyft report RUN_DIR`: write report.md (Tables I–VI, significance) and figures/ from a run's results.json.

Reads only what ``hyft run`` saved (results.json, samples files, manifest.json); it never trains or
evaluates, so it can be rerun at any time, e.g. while a long run is still adding cells.
"""

from __future__ import annotations

from pathlib import Path

import typer

from hyft.cli.errors import UserError, user_errors


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., help="Run folder holding results.json (runs/<name>)."),
        reference: str = typer.Option(
            "hybrid", "--reference", help="Method compared against every other one."
        ),
        resamples: int = typer.Option(
            1000, "--resamples", min=100, help="Paired bootstrap resamples per comparison."
        ),
    ) -> None:
        """Write RUN_DIR/report.md and RUN_DIR/figures/*.png from RUN_DIR/results.json.

        Example: hyft report runs/demo
        """
        with user_errors():
            from hyft.experiments.report import write_report
            from hyft.io import IncompleteOutputError, require_marker

            if (run_dir / "results.json").is_file():
                try:  # a folder whose run was killed mid-write has no marker: its results.json is not trusted
                    require_marker(run_dir, "run folder")
                except IncompleteOutputError as exc:
                    raise UserError(f"{exc} (`hyft run` resumes: finished cells are skipped)") from None
            path = write_report(run_dir, reference_method=reference, n_resamples=resamples)
            typer.echo(f"wrote {path} and {path.parent / 'figures'}/")
