"""`hyft evaluate config.yaml [key.sub=value ...]`: evaluate one model on tasks × languages.

Reads top to bottom: validate the config (before any heavy import), load the model (and merge its
adapter), run every task, then write ``results.json`` (metrics, no samples), ``samples.jsonl`` (one
line per example), ``tables.md`` (Table II / Table III layout) and ``config.resolved.yaml`` into
``output_dir``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import typer

from hyft.cli.errors import UserError, user_errors


def _device(spec: Any) -> str:
    import torch

    if spec.device != "auto":
        return spec.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: Any, num_labels: int | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode on the configured device; an adapter is merged into the base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    dtype = getattr(torch, spec.dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer or spec.name_or_path)
        if spec.kind == "encoder":
            model = AutoModelForSequenceClassification.from_pretrained(
                spec.name_or_path, num_labels=num_labels, dtype=dtype
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(spec.name_or_path, dtype=dtype)
    except OSError as exc:
        raise UserError(f"model.name_or_path: cannot load {spec.name_or_path!r}: {exc}") from None
    if spec.adapter_dir is not None:
        folder = Path(spec.adapter_dir)
        if not any((folder / name).is_file() for name in ("adapter_config.json", "hyft_config.json")):
            raise UserError(
                f"model.adapter_dir: {folder} has neither adapter_config.json (an adapter) nor "
                "hyft_config.json (a full fine-tuning folder)"
            )
        from hyft.adapters import load

        model = load(model, spec.adapter_dir).merge_and_unload()
    return model.to(_device(spec)).eval(), tokenizer


def _languages(task: Any, spec: Any) -> list[str]:
    from hyft.evaluation.evaluate_generation import translation_directions

    languages = list(spec.languages or task.languages)
    if task.kind != "translation":
        return languages
    targets = [lang for lang in languages if lang != spec.source_language]
    return translation_directions(targets, spec.source_language, spec.directions)


def _check_code_sandbox(allow_unsafe: bool) -> None:
    """Refuse to run model-written code without a kernel sandbox unless --unsafe-code / allow_unsafe_code."""
    from hyft.evaluation.sandbox import KERNEL_LAYERS, UnsafeCodeRefused, check_code_execution_allowed

    try:
        layers = check_code_execution_allowed(allow_unsafe)
    except UnsafeCodeRefused as exc:
        raise UserError(str(exc)) from None
    if not set(KERNEL_LAYERS) <= set(layers):
        shown = ", ".join(layers)
        typer.echo(f"warning: --unsafe-code: code runs without a kernel sandbox ({shown})", err=True)


def run_evaluation(config: Any) -> dict[str, Any]:
    """Evaluate ``config`` (an EvalConfig); returns ``{"tasks": {name: results}}`` with samples."""
    import numpy as np
    import torch

    from hyft.evaluation.evaluate import SCHEMA_VERSION, evaluate_task
    from hyft.tasks.loading import DataSource
    from hyft.tasks.registry import expand_task_names, get_task

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    data = DataSource.default(config.data_dir, config.data_source)
    loaded: dict[int | None, tuple[Any, Any]] = {}  # encoders need one head size per label set
    results: dict[str, Any] = {}
    for spec in config.tasks:
        for name in expand_task_names([spec.name], data):
            task = get_task(name)
            if task.family == "humaneval":  # runs model-written code: refuse before loading a model
                _check_code_sandbox(config.allow_unsafe_code)
            head = len(task.labels) if config.model.kind == "encoder" else None
            if head not in loaded:
                loaded.clear()  # keep one model in memory at a time
                loaded[head] = load_model(config.model, head)
            model, tokenizer = loaded[head]
            options: dict[str, Any] = {
                "num_fewshot": spec.num_fewshot,
                "seed": config.seed,
                "batch_size": config.batch_size,
                "max_examples": config.max_examples_per_language,
                "data": data,
                "templates": spec.templates,
                "chat_template": config.chat_template,
            }
            if task.kind == "classification":
                options |= {
                    "temperature_scaling": spec.temperature_scaling,
                    "orthographic": spec.orthographic,
                    "calibration_examples": config.calibration_examples,
                    "ece_bins": config.ece_bins,
                }
            else:
                options |= {
                    "max_new_tokens": spec.max_new_tokens,
                    "sandbox_timeout_s": config.sandbox_timeout_s,
                    "judge": config.judge,
                }
            typer.echo(f"evaluating {name} on {', '.join(_languages(task, spec))}", err=True)
            results[name] = evaluate_task(
                model, tokenizer, task, _languages(task, spec), model_kind=config.model.kind, **options
            )
    return {
        "schema_version": SCHEMA_VERSION,
        "name": config.name,
        "model": config.model.model_dump(mode="json"),
        "tasks": results,
    }


def write_outputs(config: Any, results: dict[str, Any]) -> Path:
    """Write results.json, samples.jsonl, tables.md and config.resolved.yaml; return the folder."""
    import yaml

    from hyft.evaluation.tables import task_tables

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from hyft.io import atomic_write_jsonl, atomic_write_text

    atomic_write_jsonl(
        out / "samples.jsonl",
        (
            {"task": task_name, **sample}
            for task_name, task_results in results["tasks"].items()
            for sample in task_results["samples"]
        ),
    )
    slim = {
        **results,
        "tasks": {
            name: {k: v for k, v in r.items() if k != "samples"} for name, r in results["tasks"].items()
        },
    }
    atomic_write_text(out / "results.json", json.dumps(slim, ensure_ascii=False, indent=2) + "\n")
    tables = [task_tables(name, {config.name: r}) for name, r in slim["tasks"].items()]
    atomic_write_text(out / "tables.md", "\n".join(tables))
    atomic_write_text(
        out / "config.resolved.yaml",
        yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False),
    )
    return out


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        config: Path = typer.Argument(
            ..., help="Evaluation config (YAML or TOML), see hyft.evaluation.config."
        ),
        overrides: list[str] = typer.Argument(None, help="key.sub=value overrides, e.g. batch_size=16"),
        unsafe_code: bool = typer.Option(
            False,
            "--unsafe-code",
            help="Run model-written code (HumanEval) even where the kernel gives no sandbox "
            "(rlimits and an audit hook only). Same as allow_unsafe_code: true in the config.",
        ),
    ) -> None:
        """Evaluate a model on tasks × languages; write results.json, samples.jsonl and tables.md.

        Example: hyft evaluate configs/eval.yaml max_examples_per_language=200
        """
        with user_errors():
            from hyft.config import load_config
            from hyft.evaluation.config import EvalConfig

            resolved = load_config(config, EvalConfig, overrides or [])
            if unsafe_code:
                resolved = resolved.model_copy(update={"allow_unsafe_code": True})
            out = write_outputs(resolved, run_evaluation(resolved))
            typer.echo((out / "tables.md").read_text(encoding="utf-8"))
            typer.echo(f"wrote {out / 'results.json'}, samples.jsonl and tables.md", err=True)
