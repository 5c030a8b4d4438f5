"""Run one cell: shots → adapter → training → evaluation → ``cells/<id>/result.json``.

Reads top to bottom. The k-shot training set is drawn per language, stratified by label and seeded
(the same shots for every method at a seed index), from the curated pool when the run curates, else
from the task's dev split; evaluation is on the task's test split.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import torch

import hyft
from hyft.experiments.cells import NO_CURATION, Cell
from hyft.experiments.config import RunConfig
from hyft.models import load_base_model
from hyft.tasks.base import Example, Task
from hyft.tasks.kshot import sample_k_shot
from hyft.tasks.loading import DataSource
from hyft.training import train
from hyft.training.data import collate

RESULT_FILE = "result.json"


def evaluation_keys(config: RunConfig, task: Task) -> list[str]:
    """Languages, or for translation the directions EN→X and X→EN of the configured targets."""
    languages = config.data.languages or list(task.languages)
    if task.kind != "translation":
        return languages
    from hyft.evaluation.evaluate_generation import translation_directions

    return translation_directions([lang for lang in languages if lang != "en"])


def shot_pools(config: RunConfig, task: Task, cell: Cell, curated: dict[str, list[dict]] | None) -> dict[str, list[Example]]:
    """Per language, the examples the k shots are drawn from: the curated view, the task's shot split
    (XNLI dev), or — for tasks without one (FLORES devtest) — the evaluation split, whose drawn shots
    are then excluded from evaluation."""
    data = DataSource.default(config.data.data_dir)
    languages = evaluation_keys(config, task)
    if cell.curation == NO_CURATION or curated is None:
        return {lang: task.load(task.shot_split or task.eval_split, lang, data) for lang in languages}
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
    to n other rows for the validation loss and the temperature fit."""
    shots, validation = {}, {}
    label_key = "label" if task.kind == "classification" else None
    for lang, pool in pools.items():
        shots[lang] = sample_k_shot(pool, k, seed, label_key=label_key)
        chosen = {id(example) for example in shots[lang]}
        rest = [example for example in pool if id(example) not in chosen]
        random.Random(f"hyft-val/{seed}/{lang}").shuffle(rest)
        validation[lang] = rest[:val_per_language]
    return shots, validation


def excluded_from_evaluation(shots: dict[str, list[Example]], validation: dict[str, list[Example]]) -> dict[str, set]:
    """Ids trained or calibrated on, which must not be evaluated when they come from the evaluation split."""
    return {lang: {e["id"] for e in shots[lang]} | {e["id"] for e in validation[lang]} for lang in shots}


def encode(task: Task, rows: dict[str, list[Example]], tokenizer: Any, kind: str, max_length: int) -> list[dict]:
    """Tokenised training examples from {language or direction: examples}, prompts as evaluation uses them."""
    from hyft.tasks.causal_lm import build_causal_lm_example, encode_pair

    if kind == "encoder":
        return [encode_pair(tokenizer, example, max_length, task) for examples in rows.values() for example in examples]
    return [build_causal_lm_example(task, example, lang, tokenizer, max_length=max_length)
            for lang, examples in rows.items() for example in examples]


def run_cell(config: RunConfig, cell: Cell, run_dir: Path, curated: dict[str, list[dict]] | None,
             is_main: bool = True, show_progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one cell; returns the cell record (also written to ``cells/<id>/result.json``)."""
    from hyft.evaluation.evaluate import classification_scores, evaluate_task
    from hyft.tasks.registry import get_task
    from hyft.tasks.templates import template_for

    cell_dir = run_dir / "cells" / cell.cell_id
    task = get_task(cell.task)
    entry = next(m for m in config.models if m.name == cell.model)
    languages = evaluation_keys(config, task)
    num_labels = len(task.labels) if entry.kind == "encoder" else None
    model, tokenizer = load_base_model(entry.name_or_path, entry.kind, num_labels, entry.dtype, entry.tokenizer,
                                       seed=cell.seed)
    if torch.cuda.is_available():
        model = model.cuda()
    pools = shot_pools(config, task, cell, curated)
    shots, validation = draw_training_set(pools, cell.k_shot, cell.seed, config.data.val_examples, task)
    record: dict[str, Any] = {**cell.as_dict(), "status": "running",
                              "shots": {lang: [e["id"] for e in rows] for lang, rows in shots.items()}}
    footprint: dict[str, Any] = {}
    dynamics: dict[str, Any] = {"epochs": [], "lambda": {}}
    if cell.k_shot > 0:
        train_config = config.train.model_copy(update={"seed": cell.seed})
        examples = encode(task, shots, tokenizer, entry.kind, config.data.max_length)
        has_val = any(validation.values())
        val_examples = encode(task, validation, tokenizer, entry.kind, config.data.max_length) if has_val else None
        order = list(range(len(examples)))
        random.Random(f"hyft-init/{cell.seed}").shuffle(order)
        size = train_config.batch_size
        init = [collate([examples[i] for i in order[s : s + size]], tokenizer.pad_token_id)
                for s in range(0, min(len(order), size * train_config.init_batches), size)]
        adapter_config = config.adapter_config(cell.method)
        started = time.perf_counter()
        model = hyft.wrap(model, adapter_config, init_batches=init, seed=cell.seed)
        init_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = train(model, examples, train_config, cell_dir / "train", eval_examples=val_examples,
                       pad_token_id=tokenizer.pad_token_id, show_progress=show_progress)
        footprint = {
            "peak_memory_bytes": result.peak_memory_bytes,
            "step_time_median_s": result.step_time_median_s,
            "trainable_parameters": result.trainable_parameters,
            "total_parameters": result.total_parameters,
            "init_seconds": init_seconds,
            "train_seconds": time.perf_counter() - started,
            "steps": result.steps,
            "epoch_time_s": [e["epoch_time_s"] for e in result.history["epochs"]],
            "epoch_peak_memory_bytes": [e["peak_memory_bytes"] for e in result.history["epochs"]],
        }
        dynamics["epochs"] = result.history["epochs"]
        for row in result.history["steps"]:
            for layer, value in row.get("lambda", {}).items():
                dynamics["lambda"].setdefault(layer, []).append(value)
        if is_main:
            model.save_pretrained(cell_dir / "adapter")
            record["adapter_dir"] = f"cells/{cell.cell_id}/adapter"
    model.eval()
    if not is_main:
        return record
    dev_scores = None
    if config.eval.temperature_scaling and task.kind == "classification":
        # Fit the temperature on held-out dev rows, never on the training shots.
        dev_scores = {}
        for lang in languages:
            rows = validation[lang][: config.eval.calibration_examples]
            template = template_for(task, lang) if entry.kind == "decoder" else None
            scored = classification_scores(model, tokenizer, task, rows, entry.kind, template,
                                           batch_size=config.eval.batch_size, progress=False)
            dev_scores[lang] = (scored.scores, [task.label_index(row) for row in rows])
    options: dict[str, Any] = {"seed": cell.seed, "batch_size": config.eval.batch_size,
                               "max_examples": config.data.max_eval_examples, "progress": show_progress,
                               "data": DataSource.default(config.data.data_dir)}
    if task.kind == "classification":
        options.update(orthographic=config.eval.orthographic, dev_scores=dev_scores, ece_bins=config.eval.ece_bins)
    else:
        options["max_new_tokens"] = config.eval.max_new_tokens
    if not task.shot_split:
        options["exclude_ids"] = excluded_from_evaluation(shots, validation)
    evaluation = evaluate_task(model, tokenizer, task, languages, model_kind=entry.kind, **options)
    samples = evaluation.pop("samples")
    cell_dir.mkdir(parents=True, exist_ok=True)
    with (cell_dir / "samples.jsonl").open("w") as handle:
        for sample in samples:
            handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
    record.update(status="done", eval=evaluation, footprint=footprint, dynamics=dynamics,
                  samples_path=f"cells/{cell.cell_id}/samples.jsonl")
    (cell_dir / RESULT_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False))
    return record
