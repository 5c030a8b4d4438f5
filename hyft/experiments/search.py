"""Hyper-parameter search: per (model, task, method), try a grid of train settings on validation rows.

Config (``search:`` in a run config, see :class:`hyft.experiments.config.SearchSection`)::

    search:
      grid: {lr: [3.0e-4, 1.0e-3, 3.0e-3], lr_lora_ga: [1.0e-5, 3.0e-5]}   # TrainConfig field → values
      methods: [lora, lora_ga, boft, hybrid]   # default: every method of the run
      k_shot: 32        # k the search trains at (default: the largest data.k_shots)
      seeds: [0]        # default: the run's first seed
      metric: accuracy  # validation accuracy (classification tasks; other tasks use val_loss) or val_loss

Protocol. For each (model, task, method) every grid point trains on the k shots of each search seed (the
same shots a cell at that k and seed trains on) and is scored on that draw's **validation rows**: rows
of the shot pool that are not shots (:func:`hyft.experiments.cell_run.draw_training_set`), never the test
split. The score of a point is the mean over search seeds of the macro (over languages) validation
accuracy, or of the validation loss. The best point wins (highest accuracy / lowest loss; ties go to
the first point in grid order, i.e. the product of the grid's values with the first field varying
slowest); every cell of that method and task then trains with the chosen values. For a task without a
separate shot split (GLUE, FLORES: the pool is the evaluation split), the rows the search trained or
scored on are also removed from the evaluated rows of every cell of the task.

Which grid fields a method searches. Non-LR fields (``epochs``, ``weight_decay``, ...) matter to every
method. An LR field matters to a method when it changes the learning rate of one of the method's
parameter groups (:meth:`hyft.training.config.TrainConfig.branch_lr`), given the rest of the grid point
and the train section; other fields are skipped for that method, so the grid does not multiply for
nothing. The method's adapter branches are:

=================  ==========================  =============================================
method             parameter groups            LR fields that move them
=================  ==========================  =============================================
lora               lora                        lr_lora, else lr
lora_ga            lora_ga                     lr_lora_ga, else lr (× 0.02)
boft, oft          rotation                    lr_rotation, else lr
unitary            unitary                     lr_rotation, else lr
hybrid             lora_ga, rotation, unitary  lr_lora_ga and lr_rotation, else lr
full               full                        lr_full, else lr (× 0.05)
(every method)     head                        lr_head
=================  ==========================  =============================================

So with ``grid: {lr: [...], lr_lora_ga: [...]}`` LoRA and BOFT search ``lr``, LoRA-GA searches
``lr_lora_ga`` (``lr`` no longer moves its branch once ``lr_lora_ga`` is set), the hybrid searches both.
The head's fallback to ``lr`` when ``lr_head`` is unset is not counted: a head is not an adapter branch,
so set ``lr_head`` (or put it in the grid) to control it independently.

Layout: ``<run_dir>/search/<model>__<task>__<method>/<point>/seed<s>/result.json`` per trial (resumable
like cells: a finished trial is skipped, an interrupted one resumes from its training checkpoint),
``<point>/result.json`` per point and ``search.json`` per (model, task, method) with every trial's score
and the chosen values; the runner copies the summaries into ``results.json`` under ``search``.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyft.experiments.cell_run import (
    RESULT_FILE,
    cell_train_config,
    draw_training_set,
    fit_adapter,
    load_model,
    shot_pools,
)
from hyft.experiments.cells import NO_CURATION, Cell
from hyft.experiments.config import ModelEntry, RunConfig
from hyft.io import atomic_write_text
from hyft.tasks.base import Example, Task
from hyft.training.config import TrainConfig

SEARCH_DIR = "search"
SUMMARY_FILE = "search.json"
# The AdamW parameter groups each adapter method trains (see the module docstring and the trainer).
METHOD_GROUPS: dict[str, tuple[str, ...]] = {
    "lora": ("lora",),
    "lora_ga": ("lora_ga",),
    "boft": ("rotation",),
    "oft": ("rotation",),
    "unitary": ("unitary",),
    "hybrid": ("lora_ga", "rotation", "unitary"),
    "full": ("full",),
}
ALWAYS_SEARCHED_LR_FIELDS = ("lr_head",)  # the task head, trained under every method


@dataclass(frozen=True)
class SearchKey:
    """One search: a model, a task and a method label of the run."""

    model: str
    task: str
    method: str

    @property
    def key_id(self) -> str:
        return f"{self.model}__{self.task}__{self.method}"


@dataclass
class TrialInputs:
    """What a trial scorer sees: the trained model and the validation rows of its draw (never test rows)."""

    config: RunConfig
    task: Task
    entry: ModelEntry
    model: Any
    tokenizer: Any
    validation: dict[str, list[Example]]
    val_examples: list[dict] | None
    train_config: TrainConfig
    metric: str


def group_lr(train: TrainConfig, group: str) -> float:
    """The LR a parameter group trains at (the trainer's rule; a plain ``lr_<group>`` fallback otherwise)."""
    if hasattr(train, "branch_lr"):
        return float(train.branch_lr(group))
    field = {"unitary": "lr_rotation"}.get(group, f"lr_{group}")
    return float(getattr(train, field, None) or train.lr)


def relevant_fields(config: RunConfig, label: str) -> list[str]:
    """Grid fields that change training of method label ``label`` (module docstring), in grid order."""
    if config.search is None:
        return []
    grid = config.search.grid
    groups = METHOD_GROUPS.get(config.adapter_config(label).method, ())
    fields = []
    for name, values in grid.items():
        if not name.startswith("lr") or name in ALWAYS_SEARCHED_LR_FIELDS:
            fields.append(name)
            continue
        others = {other: other_values[0] for other, other_values in grid.items() if other != name}
        probe = 2 * max(values) + 1.0  # an extra value: a one-value field that moves the method still applies
        rates = {
            tuple(group_lr(config.train.model_copy(update={**others, name: value}), g) for g in groups)
            for value in [*values, probe]
        }
        if len(rates) > 1:
            fields.append(name)
    return fields


def grid_points(config: RunConfig, label: str) -> list[dict[str, Any]]:
    """The points method ``label`` tries, in grid order (first field slowest); [] when nothing is searched."""
    if config.search is None or label not in config.search_methods():
        return []
    fields = relevant_fields(config, label)
    if not fields:
        return []
    values = [config.search.grid[name] for name in fields]
    return [dict(zip(fields, combination, strict=True)) for combination in itertools.product(*values)]


def point_name(point: dict[str, Any]) -> str:
    """Folder name of a grid point, e.g. ``lr=0.0003,lr_lora_ga=1e-05``."""
    return ",".join(f"{name}={value}" for name, value in point.items()).replace("/", "_")


def trial_metric(config: RunConfig, task: Task) -> str:
    """``accuracy`` for classification tasks when configured, else ``val_loss``."""
    assert config.search is not None
    return "accuracy" if config.search.metric == "accuracy" and task.kind == "classification" else "val_loss"


def plan_searches(config: RunConfig) -> list[SearchKey]:
    """Every (model, task, method) the search covers, in run order."""
    return [
        SearchKey(model.name, task, label)
        for model in config.models
        for task in config.tasks()
        for label in config.search_methods()
    ]


def search_dir(run_dir: Path, key: SearchKey) -> Path:
    return run_dir / SEARCH_DIR / key.key_id


def _search_cell(config: RunConfig, key: SearchKey, seed: int) -> Cell:
    stage = config.curation.train_stage if config.curation else NO_CURATION
    return Cell(key.model, key.method, key.task, config.search_k_shot(), stage, seed)


def search_draw(
    config: RunConfig, task: Task, key: SearchKey, seed: int, curated: dict[str, list[dict]] | None
) -> tuple[dict[str, list[Example]], dict[str, list[Example]]]:
    """(shots, validation rows) of one search seed: the draw a cell at the search's k and that seed uses."""
    pools = shot_pools(config, task, _search_cell(config, key, seed), curated)
    return draw_training_set(pools, config.search_k_shot(), seed, config.data.val_examples, task)


def search_row_ids(
    config: RunConfig, task: Task, curated: dict[str, list[dict]] | None
) -> dict[str, set[str]]:
    """Ids of every row the search trains or scores on for ``task`` (per language), over its seeds."""
    ids: dict[str, set[str]] = {}
    key = SearchKey(config.models[0].name, task.name, next(iter(config.methods)))
    for seed in config.search_seeds():
        shots, validation = search_draw(config, task, key, seed, curated)
        for lang in shots:
            ids.setdefault(lang, set()).update(e["id"] for e in shots[lang])
            ids[lang].update(e["id"] for e in validation[lang])
    return ids


def score_trial(trial: TrialInputs) -> float:
    """Validation score of a trained trial model: macro accuracy over languages,
    or the mean validation loss."""
    if trial.metric == "accuracy":
        from hyft.evaluation.evaluate import classification_scores
        from hyft.tasks.templates import template_for

        per_language = []
        for lang, rows in trial.validation.items():
            if not rows:
                continue
            template = template_for(trial.task, lang) if trial.entry.kind == "decoder" else None
            scored = classification_scores(
                trial.model,
                trial.tokenizer,
                trial.task,
                rows,
                trial.entry.kind,
                template,
                batch_size=trial.config.eval.batch_size,
                progress=False,
                chat_template=trial.config.eval.chat_template,
            )
            gold = [trial.task.label_index(row) for row in rows]
            per_language.append(
                statistics.fmean(p == g for p, g in zip(scored.predictions, gold, strict=True))
            )
        return statistics.fmean(per_language)
    from hyft.training.trainer import evaluate_loss

    device = next(trial.model.parameters()).device
    return evaluate_loss(
        trial.model,
        trial.val_examples or [],
        trial.config.eval.batch_size,
        trial.tokenizer.pad_token_id,
        device,
    )


def run_trial(
    config: RunConfig,
    key: SearchKey,
    point: dict[str, Any],
    seed: int,
    trial_dir: Path,
    curated: dict[str, list[dict]] | None,
    is_main: bool = True,
    show_progress: bool = True,
) -> None:
    """Train one grid point at one seed and write its score to ``trial_dir/result.json`` (main process)."""
    from hyft.tasks.registry import get_task

    task = get_task(key.task)
    entry = next(m for m in config.models if m.name == key.model)
    shots, validation = search_draw(config, task, key, seed, curated)
    model, tokenizer = load_model(config, entry, task, seed)
    train_config = cell_train_config(config, seed, point)
    fitted = fit_adapter(
        config,
        task,
        entry,
        model,
        tokenizer,
        key.method,
        shots,
        validation,
        train_config,
        trial_dir / "train",
        show_progress,
    )
    if not is_main:
        return
    fitted.model.eval()
    metric = trial_metric(config, task)
    score = score_trial(
        TrialInputs(
            config,
            task,
            entry,
            fitted.model,
            tokenizer,
            validation,
            fitted.val_examples,
            train_config,
            metric,
        )
    )
    record = {
        **key.__dict__,
        "point": point,
        "seed": seed,
        "k_shot": config.search_k_shot(),
        "metric": metric,
        "score": float(score),
        "train": train_config.model_dump(mode="json"),
        "shot_ids": {lang: [e["id"] for e in rows] for lang, rows in shots.items()},
        "scored_ids": {lang: [e["id"] for e in rows] for lang, rows in validation.items()},
        "steps": fitted.result.steps,
    }
    trial_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(trial_dir / RESULT_FILE, json.dumps(record, indent=1, ensure_ascii=False))


def choose(trials: list[dict[str, Any]], higher_is_better: bool) -> dict[str, Any] | None:
    """The best trial by ``score``; ties go to the first in the list (grid order)."""
    best = None
    for trial in trials:
        if best is None or (
            trial["score"] > best["score"] if higher_is_better else trial["score"] < best["score"]
        ):
            best = trial
    return best


def summarize(config: RunConfig, key: SearchKey, run_dir: Path) -> dict[str, Any] | None:
    """The search's summary from its trial files (None while a trial is missing)."""
    from hyft.tasks.registry import get_task

    metric = trial_metric(config, get_task(key.task))
    higher_is_better = metric == "accuracy"
    fields = relevant_fields(config, key.method)
    assert config.search is not None
    trials = []
    for point in grid_points(config, key.method):
        scores = {}
        for seed in config.search_seeds():
            path = search_dir(run_dir, key) / point_name(point) / f"seed{seed}" / RESULT_FILE
            if not path.is_file():
                return None
            scores[str(seed)] = json.loads(path.read_text())["score"]
        trials.append(
            {
                "point": point,
                "name": point_name(point),
                "score": statistics.fmean(scores.values()),
                "scores": scores,
            }
        )
    best = choose(trials, higher_is_better)
    return {
        **key.__dict__,
        "adapter_method": config.adapter_config(key.method).method,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "k_shot": config.search_k_shot(),
        "seeds": config.search_seeds(),
        "fields": fields,
        "skipped_fields": [f for f in config.search.grid if f not in fields],
        "trials": trials,
        "chosen": dict(best["point"]) if best else {},
        "chosen_score": best["score"] if best else None,
    }


def run_search(
    config: RunConfig,
    key: SearchKey,
    run_dir: Path,
    curated: dict[str, list[dict]] | None,
    is_main: bool = True,
    show_progress: bool = True,
    barrier: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Run the missing trials of one search, then write and return its summary (``chosen``: the values
    the cells of this (model, task, method) train with; empty when no grid field concerns the method)."""
    folder = search_dir(run_dir, key)
    for point in grid_points(config, key.method):
        for seed in config.search_seeds():
            trial_dir = folder / point_name(point) / f"seed{seed}"
            if (trial_dir / RESULT_FILE).is_file():
                continue
            run_trial(config, key, point, seed, trial_dir, curated, is_main, show_progress)
            barrier()
    summary = summarize(config, key, run_dir)
    if summary is None:
        raise RuntimeError(f"search {key.key_id}: a trial result is missing after the search ran")
    if is_main:
        folder.mkdir(parents=True, exist_ok=True)
        for trial in summary["trials"]:
            atomic_write_text(folder / trial["name"] / RESULT_FILE, json.dumps(trial, indent=1))
        atomic_write_text(folder / SUMMARY_FILE, json.dumps(summary, indent=1))
    return summary


def load_search_results(config: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """``results.json``'s ``search`` entry: the settings and every finished search's summary."""
    if config.search is None:
        return None
    searches = []
    for key in plan_searches(config):
        summary = summarize(config, key, run_dir)
        if summary is not None:
            searches.append(summary)
    return {
        "grid": config.search.grid,
        "metric": config.search.metric,
        "k_shot": config.search_k_shot(),
        "seeds": config.search_seeds(),
        "methods": config.search_methods(),
        "searches": searches,
    }
