"""Tables I–VI of the paper from a run's grouped cells, as Markdown (one table per task and model).

Per-task layouts come from :mod:`hyft.evaluation.tables`: each is rendered once from the seed means and
once from the seed stds, and :func:`with_spread` joins the two cell by cell into ``mean ± std``. Tables I
(method × task, with a GLUE macro column) and VI (footprint) have no counterpart there and are rendered
here, as are Table II's bootstrap intervals (``mean [low, high]``). Every builder
returns Markdown; when the run has no data for a table it returns one italic line saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from hyft.evaluation import tables as task_tables
from hyft.evaluation.tables import MISSING, parse_markdown_table
from hyft.experiments.aggregate import (
    CellGroup,
    GroupKey,
    Interval,
    LanguageIntervals,
    MainSetting,
    headline_score,
    mean_std,
    ordered,
    stage_sort_key,
)

Groups = Mapping[GroupKey, CellGroup]
GLUE_TASKS = ("mnli", "qqp", "sst2", "qnli")  # Table I's GLUE row: macro accuracy over these
GENERAL_BENCHMARKS = (("gsm8k", "GSM8K (%)"), ("mtbench", "MT-Bench"), ("humaneval", "HumanEval pass@1 (%)"))
GB = 1e9  # the paper's "GB"
STAGES = ("C0", "C1", "C2")


def render(header: Sequence[str], rows: Sequence[Sequence[str]], label_columns: int = 1) -> str:
    """A pipe table in the layout of :mod:`hyft.evaluation.tables` (labels left, numbers right)."""
    align = ["---"] * label_columns + ["---:"] * (len(header) - label_columns)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def mean_pm_std(mean: float | None, std: float | None, scale: float = 1.0, digits: int = 1) -> str:
    """``61.0 ± 1.2`` (scaled), just the mean without a std, ``–`` without a mean."""
    if mean is None:
        return MISSING
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def with_spread(mean_table: str, std_table: str) -> str:
    """Join two tables of identical layout into one whose number cells read ``mean ± std``."""
    means, stds = parse_markdown_table(mean_table), parse_markdown_table(std_table)
    header = list(means[0]) if means else []
    rows = []
    for mean_row, std_row in zip(means, stds, strict=True):
        row = [mean_row[header[0]]]
        for column in header[1:]:
            mean, std = mean_row[column], std_row[column]
            row.append(mean if MISSING in (mean, std) else f"{mean} ± {std}")
        rows.append(row)
    return render(header, rows)


def _spread_table(renderer: Callable[..., str], groups: Mapping[str, CellGroup], **options: Any) -> str:
    means = {label: group.mean for label, group in groups.items()}
    stds = {label: group.std for label, group in groups.items()}
    return with_spread(renderer(means, **options), renderer(stds, **options))


def _slice(
    groups: Groups, setting: MainSetting, kind: str | None = None, task: str | None = None
) -> list[CellGroup]:
    return [
        g
        for g in groups.values()
        if g.key.k_shot == setting.k_shot
        and g.key.curation == setting.curation
        and (kind is None or g.mean.get("kind") == kind)
        and (task is None or g.key.task == task)
    ]


def _by_task_and_model(selected: Sequence[CellGroup], run: Mapping[str, Any]) -> dict[tuple[str, str], dict]:
    """``{(task, model): {method: group}}`` in the run's task/model/method order."""
    out: dict[tuple[str, str], dict[str, CellGroup]] = {}
    for task in ordered((g.key.task for g in selected), run.get("tasks", ())):
        for model in ordered((g.key.model for g in selected), run.get("models", ())):
            members = {g.key.method: g for g in selected if g.key.task == task and g.key.model == model}
            methods = ordered(members, run.get("methods", ()))
            if members:
                out[(task, model)] = {method: members[method] for method in methods}
    return out


def _setting_line(setting: MainSetting) -> str:
    return (
        f"k = {setting.k_shot} shots per language, curation {setting.curation or 'none'}; "
        "mean ± std over seeds."
    )


def _task_label(task: str) -> str:
    return dict(GENERAL_BENCHMARKS).get(task, task)


def table_general(groups: Groups, run: Mapping[str, Any], setting: MainSetting) -> str:
    """Table I: one column per task at the main setting and a GLUE column; rows are methods, one table
    per model; each cell is the mean ± std over seeds of the per-seed headline score (``headline_score``:
    classification accuracy in %, macro over languages; translation average BLEU; GSM8K / HumanEval %;
    MT-Bench 1–10). GLUE is, per seed, the mean over the GLUE tasks (mnli, qqp, sst2, qnli) the model's
    cells carry, as in the paper; a method without all of them has no GLUE number. Shown when the run
    has a GLUE or general benchmark task, or two or more tasks (a lone multilingual task is Table II)."""
    selected = [
        g for g in groups.values() if g.key.k_shot == setting.k_shot and g.key.curation == setting.curation
    ]
    tasks = ordered((g.key.task for g in selected), run.get("tasks", ()))
    general = [t for t in tasks if t in GLUE_TASKS or t in dict(GENERAL_BENCHMARKS)]
    if not general and len(tasks) < 2:
        return (
            "_Table I skipped: the run has no GLUE, GSM8K, MT-Bench or HumanEval cells and a single task "
            "(see Table II)._\n"
        )
    parts = []
    for model in ordered((g.key.model for g in selected), run.get("models", ())):
        members = [g for g in selected if g.key.model == model]
        model_tasks = [t for t in tasks if any(g.key.task == t for g in members)]
        glue = tuple(t for t in model_tasks if t in GLUE_TASKS)
        columns = [(_task_label(t), (t,)) for t in model_tasks]
        if glue:
            last_glue = max(i for i, (_, (t,)) in enumerate(columns) if t in GLUE_TASKS)
            columns.insert(last_glue + 1, ("GLUE", glue))
        methods = ordered((g.key.method for g in members), run.get("methods", ()))
        table = {
            method: [_benchmark_cell(members, method, col_tasks) for _, col_tasks in columns]
            for method in methods
        }
        keep = [i for i in range(len(columns)) if any(cells[i] != MISSING for cells in table.values())]
        rows = [
            [method, *[cells[i] for i in keep]]
            for method, cells in table.items()
            if any(cells[i] != MISSING for i in keep)
        ]
        if not rows:
            continue
        glue_line = f" GLUE = per seed the mean over {', '.join(glue)}, then over seeds." if glue else ""
        parts += [
            f"### Table I · tasks · {model}\n\n{_setting_line(setting)} Headline score per task: accuracy "
            "(%; macro over languages), BLEU for translation, MT-Bench on 1–10." + glue_line + "\n\n",
            render(["Method", *[columns[i][0] for i in keep]], rows),
            "\n",
        ]
    if not parts:
        return "_Table I skipped: no task at the main setting has a score (e.g. MT-Bench left unjudged)._\n"
    return "".join(parts)


def _benchmark_cell(members: Sequence[CellGroup], method: str, tasks: Sequence[str]) -> str:
    """Mean ± std over seeds of one score per seed: the mean of the headline scores of ``tasks`` at that
    seed. Seeds lacking any of the tasks, or any score, are left out; a method lacking a task has none."""
    by_task = {g.key.task: g for g in members if g.key.method == method and g.key.task in tasks}
    if len(by_task) < len(set(tasks)):
        return MISSING
    per_seed = []
    for seed in sorted(set.intersection(*(set(g.seeds) for g in by_task.values()))):
        scores = [
            headline_score(c["eval"])[0] for g in by_task.values() for c in g.cells if c["seed"] == seed
        ]
        if scores and None not in scores:
            per_seed.append(sum(scores) / len(scores))
    mean, std = mean_std(per_seed)
    return mean_pm_std(mean, std)


def multilingual_groups(groups: Groups, setting: MainSetting) -> list[CellGroup]:
    """The groups of Table II: multilingual classification at the main setting (GLUE tasks go to Table I)."""
    return [g for g in _slice(groups, setting, "classification") if g.key.task not in GLUE_TASKS]


def interval_text(interval: Interval | None, digits: int = 1) -> str:
    """``54.3 [51.2, 57.0]``, or ``–`` without an interval."""
    if interval is None:
        return MISSING
    return f"{interval.mean:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def interval_table(
    by_method: Mapping[str, CellGroup], intervals: Mapping[GroupKey, LanguageIntervals]
) -> str:
    """Per-language accuracy, Macro and Δ as ``mean [low, high]`` (percent), one row per method."""
    languages = ordered(lang for g in by_method.values() for lang in (g.mean.get("accuracy") or {}))
    languages += [
        lang
        for g in by_method.values()
        if g.key in intervals
        for lang in intervals[g.key].accuracy
        if lang not in languages
    ]
    rows = []
    for method, group in by_method.items():
        found = intervals.get(group.key)
        if found is None:
            rows.append([method, *[MISSING] * (len(languages) + 2)])
            continue
        rows.append(
            [
                method,
                *[interval_text(found.accuracy.get(lang)) for lang in languages],
                interval_text(found.macro),
                interval_text(found.delta),
            ]
        )
    return render(["Method", *[lang.upper() for lang in languages], "Macro", "Δ"], rows)


def table_multilingual(
    groups: Groups,
    run: Mapping[str, Any],
    setting: MainSetting,
    intervals: Mapping[GroupKey, LanguageIntervals] | None = None,
    confidence: float = 0.95,
) -> str:
    """Table II: per-language accuracy, Macro, Δ, Avg-ECE (percent) for each multilingual
    classification task (GLUE tasks go to Table I) and model; with ``intervals``
    (:func:`hyft.experiments.aggregate.language_intervals`) a second table gives accuracy, Macro and Δ
    as ``mean [low, high]`` with the hierarchical bootstrap interval (ECE, a binned statistic, has none)."""
    selected = multilingual_groups(groups, setting)
    if not selected:
        return "_Table II skipped: the run has no multilingual classification (XNLI-style) cells._\n"
    parts = []
    for (task, model), by_method in _by_task_and_model(selected, run).items():
        parts += [
            f"### Table II · {task} · {model}\n\n{_setting_line(setting)}\n\n",
            _spread_table(task_tables.classification_table, by_method),
            "\n",
        ]
        if intervals and any(g.key in intervals for g in by_method.values()):
            parts += [
                f"{confidence:.0%} CIs, {task} · {model}: mean over seeds [low, high] of a bootstrap that "
                "resamples seeds, then test examples (per-example correctness from the samples files); Δ's "
                "interval leans high, as best − worst of noisy accuracies does.\n\n",
                interval_table(by_method, intervals),
                "\n",
            ]
    return "".join(parts)


def _translation_gaps(group: CellGroup, metric: str) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """((mean, std) of Δ, (mean, std) of the reverse-direction gap) over the group's seeds.

    Δ = ``delta_<metric>``, max − min over the EN→X directions; the reverse gap = ``reverse_gap_<metric>``.
    Results written before ``reverse_gap_*`` existed held the reverse gap in ``delta_*``: for them the
    reverse gap is that value and Δ is recomputed per seed from the per-direction scores."""
    from hyft.evaluation.metrics import en_x_spread

    deltas, reverses = [], []
    for cell in group.cells:
        scores = cell.get("eval") or {}
        if f"reverse_gap_{metric}" in scores:
            deltas.append(scores.get(f"delta_{metric}"))
            reverses.append(scores.get(f"reverse_gap_{metric}"))
            continue
        by_direction = {k: v for k, v in (scores.get(metric) or {}).items() if v is not None}
        deltas.append(
            en_x_spread(by_direction) if sum(k.startswith("en-") for k in by_direction) >= 2 else None
        )
        reverses.append(scores.get(f"delta_{metric}"))
    return mean_std(deltas), mean_std(reverses)


def _translation_table(by_method: Mapping[str, CellGroup], metric: str) -> str:
    """Per direction, Avg, Δ (EN→X spread) and Rev. Δ (reverse-direction gap), each mean ± std over seeds."""
    views, reverse = {}, {}
    for method, group in by_method.items():
        (delta_mean, delta_std), reverse[method] = _translation_gaps(group, metric)
        views[method] = replace(
            group,
            mean={**group.mean, f"delta_{metric}": delta_mean},
            std={**group.std, f"delta_{metric}": delta_std},
        )
    rows = parse_markdown_table(_spread_table(task_tables.translation_table, views, metric=metric))
    header = [*rows[0], "Rev. Δ"] if rows else ["Method", "Rev. Δ"]
    return render(header, [[*row.values(), mean_pm_std(*reverse[row["Method"]])] for row in rows])


def table_translation(groups: Groups, run: Mapping[str, Any], setting: MainSetting) -> str:
    """Table III: BLEU (then chrF) per direction, Avg, Δ (max − min over the EN→X directions, the paper's
    Δ) and Rev. Δ (mean |a→b − b→a| over pairs run both ways), per translation task and model."""
    selected = _slice(groups, setting, "translation")
    if not selected:
        return "_Table III skipped: the run has no translation (FLORES) cells._\n"
    parts = []
    for (task, model), by_method in _by_task_and_model(selected, run).items():
        parts.append(
            f"### Table III · {task} · {model}\n\n{_setting_line(setting)} Δ = max − min over the EN→X "
            "directions; Rev. Δ = mean |A→B − B→A| over the pairs run both ways (– where undefined). "
            "No bootstrap interval: both translation metrics are corpus-level, with no per-example score "
            "to resample.\n\n"
        )
        for metric, label in (("bleu", "BLEU"), ("chrf", "chrF")):
            parts += [f"{label}\n\n", _translation_table(by_method, metric), "\n"]
    return "".join(parts)


def table_robustness(groups: Groups, run: Mapping[str, Any], setting: MainSetting) -> str:
    """Table IV: accuracy drop on orthographic variants per language and macro (percent points)."""
    selected = [g for g in _slice(groups, setting, "classification") if g.mean.get("orthographic")]
    if not selected:
        return "_Table IV skipped: no cell was evaluated on orthographic variants._\n"
    parts = []
    for (task, model), by_method in _by_task_and_model(selected, run).items():
        parts += [
            f"### Table IV · {task} · {model}\n\n{_setting_line(setting)} Drop = clean − variant "
            "accuracy (lower is better); 'changed' = share of examples an operation altered.\n\n",
            _spread_table(task_tables.robustness_table, by_method),
            "\n",
        ]
    return "".join(parts)


def table_curation(groups: Groups, run: Mapping[str, Any], setting: MainSetting) -> str:
    """Table V: the same task, model, method and k at different curation stages (rows ``stage · method``)."""
    selected = [
        g
        for g in groups.values()
        if g.key.k_shot == setting.k_shot and g.mean.get("kind") == "classification"
    ]
    parts = []
    for task in ordered((g.key.task for g in selected), run.get("tasks", ())):
        for model in ordered((g.key.model for g in selected), run.get("models", ())):
            members = [g for g in selected if g.key.task == task and g.key.model == model]
            by_method: dict[str, list[CellGroup]] = {}
            for group in members:
                by_method.setdefault(group.key.method, []).append(group)
            rows = {
                f"{g.key.curation} · {method}": g
                for method in ordered(by_method, run.get("methods", ()))
                if len(by_method[method]) >= 2
                for g in sorted(by_method[method], key=lambda g: stage_sort_key(g.key.curation))
            }
            if rows:
                parts += [
                    f"### Table V · {task} · {model}\n\nk = {setting.k_shot}; rows are curation stage · "
                    "method; mean ± std over seeds.\n\n",
                    _spread_table(task_tables.classification_table, rows),
                    "\n",
                ]
    if not parts:
        return "_Table V skipped: no method was run at two or more curation stages._\n"
    return "".join(parts)


def table_footprint(groups: Groups, run: Mapping[str, Any], setting: MainSetting) -> str:
    """Table VI: peak memory (GB = 10⁹ bytes), median step time (s), tunable and total parameters
    (millions) and training time (s) per method, for the primary task at the main setting."""
    selected = [g for g in _slice(groups, setting, task=setting.primary_task) if g.footprint_mean]
    if not selected:
        return "_Table VI skipped: no cell recorded a training footprint._\n"
    columns = [
        ("Peak mem. (GB)", "peak_memory_bytes", 1 / GB, 2),
        ("Step time (s)", "step_time_median_s", 1, 3),
        ("Tunable (M)", "trainable_parameters", 1e-6, 3),
        ("Total (M)", "total_parameters", 1e-6, 1),
        ("Train (s)", "train_seconds", 1, 1),
    ]
    parts = []
    for (task, model), by_method in _by_task_and_model(selected, run).items():
        rows = [
            [
                method,
                *[
                    mean_pm_std(g.footprint_mean.get(key), g.footprint_std.get(key), scale, digits)
                    for _, key, scale, digits in columns
                ],
            ]
            for method, g in by_method.items()
        ]
        parts += [
            f"### Table VI · {task} · {model}\n\n{_setting_line(setting)}\n\n",
            render(["Method", *[c[0] for c in columns]], rows),
            "\n",
        ]
    return "".join(parts)


def curation_counts(curation: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{lang: {"input", "C0", "C1", "C2", "dropped"}}`` from either the schema-doc shape
    (``per_language`` with ``kept``, or ``stages``) or the governance report
    (``languages`` with ``n_c0``…)."""
    if not curation:
        return {}
    counts: dict[str, dict[str, Any]] = {}
    if "languages" in curation:
        for lang, summary in curation["languages"].items():
            counts[lang] = {
                "input": summary.get("n_input"),
                "dropped": summary.get("dropped", {}),
                **{stage: summary.get(f"n_{stage.lower()}") for stage in STAGES},
            }
    elif "per_language" in curation:
        for lang, summary in curation["per_language"].items():
            counts[lang] = {
                "input": summary.get("input"),
                "dropped": summary.get("dropped", {}),
                **{stage: summary.get("kept", {}).get(stage) for stage in STAGES},
            }
    for stage, by_lang in (curation.get("stages") or {}).items():
        for lang, n in by_lang.items():
            if stage in STAGES and isinstance(n, int | float):
                counts.setdefault(lang, {"input": None, "dropped": {}}).setdefault(stage, n)
    return counts


def table_curation_counts(curation: Mapping[str, Any] | None) -> str:
    """Examples per language kept at each stage, the C0→C2 retention and the top drop reasons."""
    counts = curation_counts(curation)
    if not counts:
        return "_No curation counts: the run has no governance report (results.json `curation` is null)._\n"
    rows = []
    for lang, c in counts.items():
        kept = [c.get(stage) for stage in STAGES]
        retention = f"{100 * kept[2] / kept[0]:.1f}" if kept[0] and kept[2] is not None else MISSING
        reasons = sorted((c.get("dropped") or {}).items(), key=lambda item: (-item[1], item[0]))[:3]
        rows.append(
            [
                lang,
                *[MISSING if v is None else str(v) for v in (c.get("input"), *kept)],
                retention,
                ", ".join(f"{reason} {n}" for reason, n in reasons) or MISSING,
            ]
        )
    return render(["Language", "Input", "C0", "C1", "C2", "C0→C2 kept (%)", "Top drop reasons"], rows)
