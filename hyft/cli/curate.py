"""`hyft curate`: C0 -> C1 -> C2 with a per-language ledger and report.

Two ways in: a config file (see configs/curate-example.yaml), or flags only. Flags given next to a
config file override it; `--set key.sub=value` reaches any other setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hyft.cli.errors import UserError, user_errors

if TYPE_CHECKING:
    from hyft.governance.config import CurateJob

EPILOG = """Examples:

  hyft curate configs/curate-example.yaml

  hyft curate --input pool.jsonl --text-fields premise,hypothesis --lang-field lang \\
      --label-field label --out runs/pool/curation

  hyft curate --input reviews.csv --text-fields utterance --lang-field locale --label-field gold \\
      --id-field review_id --out runs/reviews/curation

  hyft curate --dataset my-org/my-pool --dataset-config en --dataset-split train \\
      --text-fields text --default-language en --out runs/my-pool/curation

  hyft curate configs/curate-example.yaml --decontaminate test.en.jsonl,test.zh.jsonl

  hyft curate configs/curate-example.yaml --decontaminate xnli:test

  hyft curate configs/curate-example.yaml --set curation.quality.ppl_quantile=0.9 --workers 2 \\
      --executor datatrove_local
"""


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def build_job(config_path: Path | None, overrides: dict[str, Any], sets: list[str]) -> CurateJob:
    """Merge a config file (optional), flag values and --set overrides into a validated CurateJob."""
    from hyft.config.loading import apply_overrides, read_config_file, validate_config
    from hyft.governance.config import CurateJob, is_task_split

    if config_path is not None:
        data, line_map = read_config_file(config_path)
        source = str(config_path)
    else:
        data, line_map, source = {}, {}, "<command line>"
    curation = data.setdefault("curation", {})
    if not isinstance(curation, dict):
        raise UserError(f"{source}: 'curation' must be a mapping of settings")
    for key, value in overrides.items():
        if value is None:
            continue
        if key in (
            "input",
            "input_format",
            "dataset",
            "dataset_config",
            "dataset_split",
            "output_dir",
            "data_dir",
        ):
            data[key] = value
            path: tuple[str, ...] = (key,)
        elif key == "decontaminate":
            files = [name for name in value if not is_task_split(name)]
            tasks = [name for name in value if is_task_split(name)]
            # Keep the file's n-gram settings (and its rows);
            # the flag's files and task splits replace its own.
            base = curation.get(key) if isinstance(curation.get(key), dict) else {}
            curation[key] = {**base, "files": files, "tasks": tasks}
            path = ("curation", key)
        else:
            curation[key] = value
            path = ("curation", key)
        flag = {"output_dir": "--out", "progress": "--quiet"}.get(key, "--" + key.replace("_", "-"))
        line_map[path] = f"command-line flag {flag}"  # an error in it names the flag, not the file
    data = apply_overrides(data, sets, line_map)
    missing = [flag for flag, key in (("--out", "output_dir"),) if key not in data]
    if "input" not in data and "dataset" not in data:
        missing.insert(0, "--input (or --dataset)")
    if config_path is None and "text_fields" not in curation:
        missing.append("--text-fields")
    if missing:
        raise UserError(f"without a config file, {', '.join(missing)} must be given (see hyft curate --help)")
    return validate_config(data, CurateJob, source, line_map)


def _curate(job: CurateJob) -> Any:
    """Run curation; a bad input format or an unusable output folder is a user error (exit 2)."""
    from hyft.experiments.decontamination import resolve_eval_tasks
    from hyft.governance import curate
    from hyft.governance.table_input import table_pool
    from hyft.governance.validate import PoolFormatError
    from hyft.io import OutputError
    from hyft.tasks.loading import DataSource

    out = Path(job.output_dir)
    settings = job.curation
    if settings.decontaminate.tasks:  # task:split names are loaded here: governance cannot import tasks
        settings = resolve_eval_tasks(settings, DataSource.default(job.data_dir))
    try:  # a CSV / Parquet file or a dataset split is written as JSONL into the output folder first
        pool = table_pool(
            settings,
            out,
            path=job.input,
            input_format=job.input_format,
            dataset=job.dataset,
            dataset_config=job.dataset_config,
            split=job.dataset_split,
        )
        return curate(pool, settings, out)
    except PoolFormatError as exc:
        raise UserError(str(exc)) from None
    except OutputError as exc:
        raise UserError(f"--out (output_dir): {exc}") from None
    except OSError as exc:
        target = Path(exc.filename) if exc.filename else None
        if target is not None and (target == out or out in target.parents):
            raise UserError(f"--out (output_dir): cannot write {target} ({exc.strerror or exc})") from None
        raise


def register(app: typer.Typer) -> None:
    @app.command("curate", epilog=EPILOG)
    def curate_command(
        config: Path | None = typer.Argument(
            None, help="YAML/TOML with input, output_dir and a curation section."
        ),
        input: str | None = typer.Option(
            None, "--input", help="The pool: JSONL (one record per line), CSV or Parquet."
        ),
        input_format: str | None = typer.Option(
            None, help="jsonl, csv or parquet (default: from the suffix)."
        ),
        dataset: str | None = typer.Option(
            None,
            "--dataset",
            help="Instead of --input: a dataset for datasets.load_dataset (Hub name, read from the "
            "local cache when offline, or a local folder of data files named by split).",
        ),
        dataset_config: str | None = typer.Option(None, help="--dataset: its configuration (subset) name."),
        dataset_split: str | None = typer.Option(
            None, help="--dataset: the split to curate (default: train)."
        ),
        out: str | None = typer.Option(None, "--out", help="Output folder (ledger, C0/C1/C2, report)."),
        text_fields: str | None = typer.Option(
            None, help="Comma-separated text fields (columns), e.g. premise,hypothesis."
        ),
        lang_field: str | None = typer.Option(
            None, help="Field (column) with the declared language (default: lang)."
        ),
        default_language: str | None = typer.Option(
            None, help="Language for records without the language field."
        ),
        label_field: str | None = typer.Option(
            None, help="Optional label field (near pairs with different labels are kept)."
        ),
        id_field: str | None = typer.Option(None, help="Optional id field (default: the line number)."),
        languages: str | None = typer.Option(None, help="Comma-separated allow-list of languages."),
        executor: str | None = typer.Option(None, help="inline (default) or datatrove_local."),
        workers: int | None = typer.Option(None, help="Tasks for the datatrove executor."),
        decontaminate: str | None = typer.Option(
            None,
            "--decontaminate",
            help="Comma-separated JSONL evaluation files (same text fields) and/or task splits such as "
            "xnli:test (every language of the task, or of --languages): records copying a row, exactly or by "
            "a shared 13-word span (50 characters for Chinese/Japanese/Thai), are "
            "dropped as eval_contamination.",
        ),
        data_dir: str | None = typer.Option(
            None,
            "--data-dir",
            help="Where task splits named in --decontaminate are read (default: ../shared/data).",
        ),
        set_: list[str] = typer.Option([], "--set", help="Override any setting: key.sub=value (repeatable)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:
        """Curate a multilingual pool: validate, LID + dedup (C1), length + perplexity (C2)."""
        with user_errors():
            overrides = {
                "input": input,
                "input_format": input_format,
                "dataset": dataset,
                "dataset_config": dataset_config,
                "dataset_split": dataset_split,
                "output_dir": out,
                "text_fields": _split(text_fields),
                "lang_field": lang_field,
                "default_language": default_language,
                "label_field": label_field,
                "id_field": id_field,
                "languages": _split(languages),
                "executor": executor,
                "workers": workers,
                "progress": False if quiet else None,
                "decontaminate": _split(decontaminate),
                "data_dir": data_dir,
            }
            job = build_job(config, overrides, set_)
            result = _curate(job)
            if result.previous:
                typer.echo(result.previous)
            total = result.report["total"]
            typer.echo(
                f"curated {total['n_input']} records: C0 {total['n_c0']}, C1 {total['n_c1']}, "
                f"C2 {total['n_c2']} -> {result.out_dir} (ledger.jsonl, report.md)"
            )
