"""``hyft export``: an adapter folder → a plain transformers model folder (config, safetensors, tokenizer).

``hyft export ADAPTER_DIR --base MODEL --out DIR --merged [--dtype bf16]`` loads the base in fp32, puts
the saved adapter on it (checking the base fingerprint), merges every adapter into its weight in fp32
(``merge_and_unload``), casts once to ``--dtype`` and writes the model with transformers'
``save_pretrained`` (safetensors, sharded above ``--max-shard-size``) plus the base's tokenizer. The
folder loads offline with ``AutoModelForCausalLM`` / ``AutoModelForSequenceClassification.from_pretrained``
and serves from vLLM or TGI like any transformers checkpoint. A full fine-tuning folder exports the same way
(re-saved in ``--dtype`` with the tokenizer).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer

from hyft.cli.errors import UserError, guarded

DTYPES = ("fp32", "bf16", "fp16")


def _saved_config(adapter_dir: Path) -> tuple[dict[str, Any], Path]:
    from hyft.adapters.model import CONFIG_NAME, FULL_CONFIG_NAME

    for name in (CONFIG_NAME, FULL_CONFIG_NAME):
        path = adapter_dir / name
        if path.is_file():
            saved = json.loads(path.read_text())
            if "hyft" not in saved:
                raise UserError(
                    f"{path}: not a hyft adapter (no 'hyft' block); merge PEFT adapters with peft"
                )
            return saved, path
    raise UserError(
        f"{adapter_dir}: no {CONFIG_NAME} (adapter) or {FULL_CONFIG_NAME} (full fine-tuning) found; "
        "pass the folder hyft train / HyftModel.save_pretrained wrote"
    )


def _num_labels(adapter_dir: Path, saved: dict[str, Any]) -> int:
    """Classes of a sequence-classification adapter: rows of its saved head's output projection."""
    from safetensors import safe_open

    from hyft.adapters.model import FULL_CONFIG_NAME, PEFT_PREFIX, WEIGHTS_NAME

    if (adapter_dir / FULL_CONFIG_NAME).is_file():
        config = json.loads((adapter_dir / "config.json").read_text())
        return int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    heads = saved.get("modules_to_save") or []
    rows = []
    with safe_open(str(adapter_dir / WEIGHTS_NAME), framework="pt") as handle:
        for key in handle.keys():
            inside = key.removeprefix(PEFT_PREFIX).split(".")
            if key.endswith(".weight") and any(h in inside for h in heads):
                shape = handle.get_slice(key).get_shape()
                if len(shape) == 2:
                    rows.append(shape[0])
    if not rows:
        raise UserError(
            f"{adapter_dir}: a sequence-classification adapter without a saved head "
            f"(modules_to_save {heads}); cannot tell the number of labels"
        )
    return min(rows)  # the classifier's output projection (a two-layer head's dense layer is hidden-sized)


def export_merged(
    adapter_dir: str | Path,
    base: str,
    out: str | Path,
    dtype: str = "fp32",
    tokenizer: str | None = None,
    max_shard_size: str = "5GB",
) -> Path:
    """Write the merged model folder (see the module docstring); returns ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from hyft.adapters.model import load
    from hyft.models import COMPUTE_DTYPES, resolve_model_path

    adapter_dir, out = Path(adapter_dir), Path(out)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder; choose a new one")
    saved, config_path = _saved_config(adapter_dir)
    task = saved.get("task_type")
    if task not in ("CAUSAL_LM", "SEQ_CLS"):
        raise UserError(
            f"{config_path}: task_type {task!r}; hyft export writes causal LMs (CAUSAL_LM) and "
            "sequence classifiers (SEQ_CLS)"
        )
    path = resolve_model_path(base)
    try:
        if task == "SEQ_CLS":
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=_num_labels(adapter_dir, saved), dtype=torch.float32
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        processor = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer) if tokenizer else path)
    except OSError as exc:
        raise UserError(
            f"--base {base!r}: cannot load the model or its tokenizer ({exc}); pass --tokenizer "
            "when the tokenizer lives elsewhere"
        ) from None
    try:
        merged = load(model, adapter_dir).merge_and_unload()  # fp32 merge, fingerprint-checked
    except ValueError as exc:
        raise UserError(str(exc)) from None
    merged = merged.to(COMPUTE_DTYPES[dtype])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        merged.save_pretrained(staging, max_shard_size=max_shard_size)
        processor.save_pretrained(staging)
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)  # the folder appears complete or not at all
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def register(app: typer.Typer) -> None:
    @app.command("export")
    @guarded
    def export(
        adapter_dir: Path = typer.Argument(..., help="Folder written by hyft train / save_pretrained."),
        base: str = typer.Option(
            ..., "--base", help="The base model it was trained on (Hub id, folder, minilm)."
        ),
        out: Path = typer.Option(..., "--out", help="New folder for the transformers model."),
        merged: bool = typer.Option(False, "--merged", help="Merge the adapter into the weights (required)."),
        dtype: str = typer.Option("fp32", "--dtype", help="Saved weight dtype: fp32, bf16 or fp16."),
        tokenizer: str | None = typer.Option(
            None, "--tokenizer", help="Tokenizer to save; default the base's."
        ),
        max_shard_size: str = typer.Option("5GB", "--max-shard-size", help="Largest safetensors shard."),
    ) -> None:
        """Write a merged transformers model folder (config, safetensors, tokenizer) from a hyft adapter."""
        if not merged:
            raise UserError(
                "hyft export writes merged models only: pass --merged (the adapter folder itself "
                "is the unmerged form; load it with hyft.load)"
            )
        written = export_merged(
            adapter_dir, base, out, dtype=dtype, tokenizer=tokenizer, max_shard_size=max_shard_size
        )
        typer.echo(f"wrote {written} ({dtype}): AutoModel*.from_pretrained({str(written)!r}) loads it")
