"""Run one cell: shots → adapter → training → evaluation → ``cells/<id>/result.json``.

Reads top to bottom. The k-shot training set is drawn per language, stratified by label and seeded
(the same shots for every method at a seed index), from the curated pool when the run curates, else
from the task's dev split; evaluation is on the task's test split. With a ``search`` section the cell
trains with the settings its (model, task, method) search chose (:mod:`hyft.experiments.search`), and
``result.json`` records the train settings used (``train``) and the searched values (``search_choice``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import hyft
from hyft.distributed import is_distributed, sharded_evaluation
from hyft.errors import UserError
from hyft.experiments.cells import NO_CURATION, Cell
from hyft.experiments.config import ModelEntry, RunConfig
from hyft.io import atomic_write_jsonl, atomic_write_text
from hyft.models import load_base_model
from hyft.tasks.base import Example, Task
from hyft.tasks.kshot import sample_k_shot, without_groups_of
from hyft.tasks.loading import DataSource
from hyft.tasks.templates import ChatTemplateMode
from hyft.training import train
from hyft.training.config import TrainConfig
from hyft.training.data import collate
from hyft.training.trainer import TrainResult

RESULT_FILE = "result.json"
logger = logging.getLogger(__name__)


def evaluation_keys(config: RunConfig, task: Task) -> list[str]:
    """Languages (``data.languages`` for a multilingual task, its one language otherwise), or for
    translation the directions EN→X and X→EN of the configured targets."""
    languages = config.languages_for(task)
    if task.kind != "translation":
        return languages
    from hyft.evaluation.evaluate_generation import translation_directions

    return translation_directions([lang for lang in languages if lang != "en"])


def shot_pools(
    config: RunConfig, task: Task, cell: Cell, curated: dict[str, list[dict]] | None
) -> dict[str, list[Example]]:
    """Per language, the examples the k shots are drawn from: the curated view, the task's shot split
    (XNLI dev), or — for tasks without one (FLORES devtest) — the evaluation split, whose drawn shots
    are then excluded from evaluation."""
    data = DataSource.default(config.data.data_dir)
    languages = evaluation_keys(config, task)
    if cell.curation == NO_CURATION or curated is None:
        # A task may mark which rows can be shots (MT-Bench: only questions with a reference answer).
        trainable = task.extra.get("trainable")
        return {
            lang: [
                e
                for e in task.load(task.shot_split or task.eval_split, lang, data)
                if trainable is None or trainable(e)
            ]
            for lang in languages
        }
    view = curated[cell.curation.lower()]
    pools: dict[str, list[Example]] = {lang: [] for lang in languages}
    for record in view:
        lang = record.get("lang")
        if lang in pools and record.get("label") in task.labels:
            example = {k: v for k, v in record.items() if k != "_provenance"}
            example["id"] = f"pool/{record['_provenance']['id']}"
            pools[lang].append(example)
    return pools


def draw_training_set(pools: dict[str, list[Example]], k: int, seed: int, val_per_language: int, task: Task):
    """(shots, validation rows) per language: k shots (stratified by label for classification), then up
    to n other rows for the validation loss, the search score and the temperature fit — none sharing a
    premise (:func:`hyft.tasks.kshot.pair_group`) with a shot."""
    shots, validation = {}, {}
    label_key = "label" if task.kind == "classification" else None
    for lang, pool in pools.items():
        shots[lang] = sample_k_shot(pool, k, seed, label_key=label_key)
        chosen = {id(example) for example in shots[lang]}
        rest = without_groups_of(
            task, [example for example in pool if id(example) not in chosen], shots[lang]
        )
        random.Random(f"hyft-val/{seed}/{lang}").shuffle(rest)
        validation[lang] = rest[:val_per_language]
    return shots, validation


def excluded_from_evaluation(
    shots: dict[str, list[Example]], validation: dict[str, list[Example]]
) -> dict[str, set]:
    """Ids trained or calibrated on, which must not be evaluated when they come from the evaluation split."""
    return {lang: {e["id"] for e in shots[lang]} | {e["id"] for e in validation[lang]} for lang in shots}


def encode(
    task: Task,
    rows: dict[str, list[Example]],
    tokenizer: Any,
    kind: str,
    max_length: int,
    chat_template: ChatTemplateMode = "auto",
) -> list[dict]:
    """Tokenised training examples from {language or direction: examples}, prompts as evaluation uses them
    (``chat_template``: the run's ``eval.chat_template``, so train and eval see one format)."""
    from hyft.tasks.causal_lm import build_causal_lm_example, encode_pair

    if kind == "encoder":
        return [
            encode_pair(tokenizer, example, max_length, task)
            for examples in rows.values()
            for example in examples
        ]
    return [
        build_causal_lm_example(
            task, example, lang, tokenizer, max_length=max_length, chat_template=chat_template
        )
        for lang, examples in rows.items()
        for example in examples
    ]


def cell_train_config(
    config: RunConfig, seed: int, search_choice: dict[str, Any] | None = None
) -> TrainConfig:
    """The train section with the cell's seed and, when searched, the chosen grid values."""
    return config.train.model_copy(update={**(search_choice or {}), "seed": seed})


def load_model(config: RunConfig, entry: ModelEntry, task: Task, seed: int) -> tuple[Any, Any]:
    """(model, tokenizer): the base model with a fresh head for encoders, on the GPU when there is one."""
    num_labels = len(task.labels) if entry.kind == "encoder" else None
    model, tokenizer = load_base_model(
        entry.name_or_path,
        entry.kind,
        num_labels,
        entry.dtype,
        entry.tokenizer,
        seed=seed,
        quantization=entry.quantization,
    )
    if torch.cuda.is_available() and entry.quantization is None:  # a quantized model is loaded in place
        model = model.cuda()
    return model, tokenizer


@dataclass
class Fitted:
    """A trained adapter model with its training result and timings."""

    model: Any
    result: TrainResult
    init_seconds: float
    train_seconds: float
    val_examples: list[dict] | None


def fit_adapter(
    config: RunConfig,
    task: Task,
    entry: ModelEntry,
    model: Any,
    tokenizer: Any,
    method: str,
    shots: dict[str, list[Example]],
    validation: dict[str, list[Example]],
    train_config: TrainConfig,
    out_dir: Path,
    show_progress: bool = True,
) -> Fitted:
    """Wrap ``model`` with the adapter of method label ``method`` (LoRA-GA's gradient init on the first
    batches of the shots) and train it on the shots, with the validation rows for the val loss; the
    trainer checkpoints under ``out_dir`` and resumes from there."""
    num_labels = len(task.labels) if entry.kind == "encoder" else None
    examples = encode(task, shots, tokenizer, entry.kind, config.data.max_length, config.eval.chat_template)
    has_val = any(validation.values())
    val_examples = (
        encode(task, validation, tokenizer, entry.kind, config.data.max_length, config.eval.chat_template)
        if has_val
        else None
    )
    order = list(range(len(examples)))
    random.Random(f"hyft-init/{train_config.seed}").shuffle(order)
    size = train_config.batch_size
    init = [
        collate([examples[i] for i in order[s : s + size]], tokenizer.pad_token_id)
        for s in range(0, min(len(order), size * train_config.init_batches), size)
    ]
    adapter_config = config.adapter_config(method)
    started = time.perf_counter()
    model = hyft.wrap(model, adapter_config, init_batches=init, seed=train_config.seed)
    init_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = train(
        model,
        examples,
        train_config,
        out_dir,
        eval_examples=val_examples,
        pad_token_id=tokenizer.pad_token_id,
        show_progress=show_progress,
        uniform_loss=math.log(num_labels) if num_labels else None,
    )
    return Fitted(model, result, init_seconds, time.perf_counter() - started, val_examples)


def check_code_sandbox(config: RunConfig) -> None:
    """Before a run with a HumanEval task trains anything: refuse (UserError) where the kernel gives the
    code sandbox no isolation and ``eval.allow_unsafe_code`` is off; else set the process-wide permission
    that the HumanEval evaluation's sandbox runs use."""
    from hyft.evaluation.sandbox import KERNEL_LAYERS, UnsafeCodeRefused, check_code_execution_allowed
    from hyft.tasks.registry import get_task

    if not any(get_task(name).family == "humaneval" for name in config.tasks()):
        return
    try:
        layers = check_code_execution_allowed(config.eval.allow_unsafe_code)
    except UnsafeCodeRefused as exc:
        message = str(exc).replace(
            "--unsafe-code (config: allow_unsafe_code: true)",
            "eval.allow_unsafe_code: true in the run config",
        )
        raise UserError(
            f"run {config.run.name!r} has a HumanEval task, which runs model-written code, but {message}"
        ) from None
    if not set(KERNEL_LAYERS) <= set(layers):
        logger.warning(
            "eval.allow_unsafe_code: HumanEval code runs without a kernel sandbox (%s)", ", ".join(layers)
        )


def run_cell(
    config: RunConfig,
    cell: Cell,
    run_dir: Path,
    curated: dict[str, list[dict]] | None,
    is_main: bool = True,
    show_progress: bool = True,
    search_choice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one cell; returns the cell record (also written to ``cells/<id>/result.json``).

    ``search_choice``: train settings chosen by the search for this cell's (model, task, method).
    """
    from hyft.tasks.registry import get_task

    cell_dir = run_dir / "cells" / cell.cell_id
    task = get_task(cell.task)
    if task.family == "humaneval":  # runs model-written code: refuse before loading a model
        check_code_sandbox(config)
    entry = next(m for m in config.models if m.name == cell.model)
    model, tokenizer = load_model(config, entry, task, cell.seed)
    pools = shot_pools(config, task, cell, curated)
    shots, validation = draw_training_set(pools, cell.k_shot, cell.seed, config.data.val_examples, task)
    record: dict[str, Any] = {
        **cell.as_dict(),
        "status": "running",
        "shots": {lang: [e["id"] for e in rows] for lang, rows in shots.items()},
        "train": None,
    }
    footprint: dict[str, Any] = {}
    dynamics: dict[str, Any] = {"epochs": [], "lambda": {}}
    if cell.k_shot > 0:
        train_config = cell_train_config(config, cell.seed, search_choice)
        record["train"] = train_config.model_dump(mode="json")
        record["search_choice"] = dict(search_choice) if search_choice is not None else None
        fitted = fit_adapter(
            config,
            task,
            entry,
            model,
            tokenizer,
            cell.method,
            shots,
            validation,
            train_config,
            cell_dir / "train",
            show_progress,
        )
        model = fitted.model
        footprint, dynamics = training_footprint(fitted), training_dynamics(fitted.result)
        if is_main or is_distributed():  # ZeRO-3: every rank joins the gather, the main one writes
            model.save_pretrained(cell_dir / "adapter", is_main_process=is_main)
        if is_main:
            record["adapter_dir"] = f"cells/{cell.cell_id}/adapter"
    model.eval()
    if not is_main and not is_distributed():
        return record
    evaluation = evaluate_cell(
        config,
        cell,
        task,
        entry,
        model,
        tokenizer,
        shots,
        validation,
        curated,
        progress=show_progress and is_main,
    )
    if not is_main:
        record.update(status="done", eval=evaluation)
        return record
    samples = evaluation.pop("samples")
    cell_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(cell_dir / "samples.jsonl", samples)  # before result.json: a result's samples exist
    record.update(
        status="done",
        eval=evaluation,
        footprint=footprint,
        dynamics=dynamics,
        samples_path=f"cells/{cell.cell_id}/samples.jsonl",
    )
    atomic_write_text(cell_dir / RESULT_FILE, json.dumps(record, indent=1, ensure_ascii=False))
    return record


def training_footprint(fitted: Fitted) -> dict[str, Any]:
    """Table VI's figures of one trained cell: memory, step time, parameter counts, init and train time."""
    result = fitted.result
    return {
        "peak_memory_bytes": result.peak_memory_bytes,
        "step_time_median_s": result.step_time_median_s,
        "trainable_parameters": result.trainable_parameters,
        "total_parameters": result.total_parameters,
        "init_seconds": fitted.init_seconds,
        "train_seconds": fitted.train_seconds,
        "steps": result.steps,
        "epoch_time_s": [e["epoch_time_s"] for e in result.history["epochs"]],
        "epoch_peak_memory_bytes": [e["peak_memory_bytes"] for e in result.history["epochs"]],
    }


def training_dynamics(result: TrainResult) -> dict[str, Any]:
    """Figure 4's series: the per-epoch history, the collapsed epochs and every layer's λ per step."""
    dynamics: dict[str, Any] = {
        "epochs": result.history["epochs"],
        "collapsed_epochs": [e["epoch"] for e in result.history["epochs"] if e.get("collapsed")],
        "lambda": {},
    }
    for row in result.history["steps"]:
        for layer, value in row.get("lambda", {}).items():
            dynamics["lambda"].setdefault(layer, []).append(value)
    return dynamics


def evaluate_cell(
    config: RunConfig,
    cell: Cell,
    task: Task,
    entry: ModelEntry,
    model: Any,
    tokenizer: Any,
    shots: dict[str, list[Example]],
    validation: dict[str, list[Example]],
    curated: dict[str, list[dict]] | None,
    progress: bool,
) -> dict[str, Any]:
    """Score the cell's model on the task's test rows. Every rank scores its share of the batches and gets
    the whole result (the numbers one process gets, :func:`hyft.distributed.map_batches`). The temperature
    is fitted on the cell's validation rows (held-out dev rows, never the training shots)."""
    from hyft.evaluation.evaluate import evaluate_task

    options: dict[str, Any] = {
        "seed": cell.seed,
        "batch_size": config.eval.batch_size,
        "max_examples": config.data.max_eval_examples,
        "progress": progress,
        "data": DataSource.default(config.data.data_dir),
        "chat_template": config.eval.chat_template,
    }
    if task.kind == "classification":
        options.update(orthographic=config.eval.orthographic, ece_bins=config.eval.ece_bins)
        if config.eval.temperature_scaling:
            options["calibration_rows"] = {
                lang: rows[: config.eval.calibration_examples] for lang, rows in validation.items()
            }
    else:
        options["max_new_tokens"] = config.eval.max_new_tokens
        options["judge"] = config.eval.judge
    if not task.shot_split:
        options["exclude_ids"] = evaluation_exclusions(config, task, shots, validation, curated)
    with sharded_evaluation():
        return evaluate_task(
            model, tokenizer, task, evaluation_keys(config, task), model_kind=entry.kind, **options
        )


def evaluation_exclusions(
    config: RunConfig,
    task: Task,
    shots: dict[str, list[Example]],
    validation: dict[str, list[Example]],
    curated: dict[str, list[dict]] | None,
) -> dict[str, set]:
    """Ids never scored when the shots come from the evaluation split: the cell's shots and validation rows
    and, with a search, every row any search trial trained or scored on."""
    excluded = excluded_from_evaluation(shots, validation)
    if config.search is not None:
        from hyft.experiments.search import search_row_ids

        for lang, ids in search_row_ids(config, task, curated).items():
            excluded[lang] = excluded.get(lang, set()) | ids
    return excluded
