"""``report.md`` and ``figures/*.png`` for a run folder, from its ``results.json`` (and ``manifest.json``).

Reads top to bottom: load and check results.json, group cells over seeds, run the hierarchical paired
bootstrap (seeds, then test examples) of the hybrid against every other method and the per-language
intervals of Table II, say in plain words which differences are significant, render Tables I–VI, draw
the figures, then write one Markdown file. Nothing is trained or evaluated, and nothing depends on the clock,
so the same input gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from hyft.errors import UserError
from hyft.evaluation.tables import MISSING
from hyft.experiments import tables
from hyft.experiments.aggregate import (
    CellGroup,
    Comparison,
    MainSetting,
    compare_methods,
    group_cells,
    language_intervals,
    main_setting,
    stage_sort_key,
)
from hyft.io import atomic_write_text

SCHEMA_VERSION = 1
CELL_KEYS = ("model", "method", "task", "k_shot", "seed", "status")
MANIFEST_ENTRIES = 40  # flattened manifest values shown in the setup section


def load_results(run_dir: Path) -> dict[str, Any]:
    """results.json of ``run_dir``, checked for what the report needs; UserError names what is wrong."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise UserError(
            f"{path}: not found; expected the results.json that `hyft run` writes into the run folder"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(results, dict) or results.get("schema_version") != SCHEMA_VERSION:
        found = results.get("schema_version") if isinstance(results, dict) else type(results).__name__
        raise UserError(
            f"{path}: expected schema_version {SCHEMA_VERSION} (docs/results-schema.md), got {found!r}"
        )
    if not isinstance(results.get("cells"), list):
        raise UserError(f"{path}: expected a list under 'cells'")
    for index, cell in enumerate(results["cells"]):
        missing = [key for key in CELL_KEYS if key not in cell]
        if cell.get("status") == "done" and not isinstance(cell.get("eval"), dict):
            missing.append("eval")
        if missing:
            raise UserError(
                f"{path}: cells[{index}] ({cell.get('cell_id', '?')}) lacks {missing}; "
                f"every cell needs {list(CELL_KEYS)} and a done cell an 'eval' dict"
            )
    results.setdefault("run", {})
    return results


def _flatten(value: Any, prefix: str = "", depth: int = 3) -> list[tuple[str, str]]:
    if isinstance(value, Mapping) and depth > 0:
        return [item for key, sub in value.items() for item in _flatten(sub, f"{prefix}{key}.", depth - 1)]
    if isinstance(value, list) and all(not isinstance(v, Mapping | list) for v in value):
        return [(prefix.rstrip("."), ", ".join(map(str, value)))]
    if isinstance(value, Mapping | list):
        return [(prefix.rstrip("."), f"({len(value)} {'entry' if len(value) == 1 else 'entries'})")]
    return [(prefix.rstrip("."), str(value))]


def _join(values: Sequence[Any]) -> str:
    return ", ".join(map(str, values)) if values else MISSING


def _setup(results: Mapping[str, Any], groups: Mapping, setting: MainSetting, manifest: Any) -> list[str]:
    run, cells = results["run"], results["cells"]
    done = sum(cell["status"] == "done" for cell in cells)

    def seen(key: str) -> list[Any]:
        return list(dict.fromkeys(cell[key] for cell in cells))

    lines = [
        "## Setup",
        "",
        f"- Run: `{run.get('name', MISSING)}`, created {run.get('created', MISSING)}, "
        f"config hash `{run.get('config_hash', MISSING)}`",
        f"- Models: {_join(run.get('models') or seen('model'))}",
        f"- Methods: {_join(run.get('methods') or seen('method'))}",
        f"- Tasks: {_join(run.get('tasks') or seen('task'))} (primary: {setting.primary_task})",
        f"- Seeds: {_join(run.get('seeds') or seen('seed'))}",
        f"- k (shots per language): {_join(run.get('k_shots') or seen('k_shot'))}",
        f"- Curation stages: {_join(run.get('curation_stages') or seen('curation'))}",
        f"- Cells: {len(cells)} ({done} done, {len(cells) - done} failed or pending)",
        f"- Main setting for Tables I–IV, VI and Figures 2–4: k = {setting.k_shot}, "
        f"curation {setting.curation or 'none'}",
    ]
    primary = [
        g
        for g in groups.values()
        if g.key.task == setting.primary_task
        and g.key.k_shot == setting.k_shot
        and g.key.curation == setting.curation
    ]
    if primary:
        per_language = primary[0].mean.get("per_language") or {}
        sizes = [f"{lang} {entry['n']:.0f}" for lang, entry in per_language.items() if "n" in entry]
        lines.append(f"- Evaluation examples per language ({setting.primary_task}): {_join(sizes)}")
    data_files = manifest.get("data_files") if isinstance(manifest, dict) else None
    if isinstance(data_files, list) and data_files:
        lines += ["", "Data files (manifest.json):", ""]
        lines += [
            f"- `{Path(str(f.get('path', '?'))).name}`: {f.get('bytes', '?')} bytes, sha256 "
            f"`{str(f.get('sha256', '?'))[:16]}…`"
            for f in data_files[:MANIFEST_ENTRIES]
            if isinstance(f, dict)
        ]
    if manifest is not None:
        items = _flatten(manifest)
        lines += ["", "Manifest (manifest.json):", ""]
        lines += [f"- `{key}`: {value}" for key, value in items[:MANIFEST_ENTRIES]]
        if len(items) > MANIFEST_ENTRIES:
            lines.append(f"- … {len(items) - MANIFEST_ENTRIES} more entries in manifest.json")
    lines += [
        "",
        "### Data governance",
        "",
        "Examples kept per language after each curation stage "
        "(C0 raw, C1 + language ID and dedup, C2 + quality filters).",
        "",
        tables.table_curation_counts(results.get("curation")).rstrip(),
        "",
    ]
    return lines


def _format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _search(results: Mapping[str, Any]) -> list[str]:
    """The hyper-parameter search (``results.json`` → ``search``): every trial's validation score and the
    values the cells trained with. Empty when the run has no ``search:`` section."""
    search = results.get("search")
    if not isinstance(search, Mapping):
        return []
    metric = search.get("metric", "accuracy")
    grid = "; ".join(
        f"{field} ∈ {{{_join([_format_value(v) for v in values])}}}"
        for field, values in search["grid"].items()
    )
    seeds = _join(search.get("seeds") or [])
    lines = [
        "### Hyper-parameter search",
        "",
        f"Grid: {grid}; each point trained at k = {search.get('k_shot')} on seed(s) {seeds} and scored by "
        f"validation {metric} (validation rows are never shots and never test rows). "
        "The chosen values train every cell of that model, task and method.",
        "",
    ]
    searches = search.get("searches") or []
    if not searches:
        return [*lines, "_No search has finished yet._", ""]
    lines += [
        f"| Model · task · method | Trial | Validation {metric} | Chosen |",
        "| --- | --- | ---: | --- |",
    ]
    scale = 100.0 if metric == "accuracy" else 1.0
    for summary in searches:
        label = f"{summary['model']} · {summary['task']} · {summary['method']}"
        chosen = summary.get("chosen") or {}
        for trial in summary.get("trials", []):
            point = trial.get("point", {})
            is_chosen = bool(chosen) and all(point.get(k) == v for k, v in chosen.items())
            score = trial.get("score")
            shown = f"{scale * score:.1f}" if isinstance(score, (int, float)) else MISSING
            lines.append(
                f"| {label} | {trial.get('name', MISSING)} | {shown} | {'**yes**' if is_chosen else ''} |"
            )
        if summary.get("skipped_fields"):
            lines.append(
                f"| {label} | (fields that do not concern it: {_join(summary['skipped_fields'])}) | | |"
            )
    return [*lines, ""]


def _notes(
    results: Mapping[str, Any],
    groups: Mapping[Any, CellGroup],
    comparisons: Sequence[Comparison],
    skipped: Sequence[str],
) -> list[str]:
    """Caveats a reader needs before trusting a difference."""
    run, cells = results["run"], results["cells"]
    seeds = run.get("seeds") or sorted({cell["seed"] for cell in cells})
    notes = []
    if len(seeds) == 1:
        notes.append(
            "1 seed: every number is a single run with no ± std; differences between methods may "
            "not repeat with another seed."
        )
    elif len(seeds) == 2:
        notes.append(
            "2 seeds: each ± std rests on two runs, so spreads are rough, and CIs are wide; "
            "treat small differences as unresolved."
        )
    else:
        notes.append(f"{len(seeds)} seeds: ± is the sample standard deviation over seeds (n − 1).")
    if run.get("complete") is False:
        notes.append(
            "results.json marks the run incomplete (`complete: false`): cells still to run are absent "
            "from every table, figure and comparison."
        )
    notes.append("Accuracy, Macro, Δ, ECE and drops are in percent (points); BLEU/chrF on their 0–100 scale.")
    if comparisons:
        widths = sorted((c.high - c.low) / 2 for c in comparisons)
        n_seeds = sorted({len(c.seeds) for c in comparisons})
        seeds_text = str(n_seeds[0]) if len(n_seeds) == 1 else f"{n_seeds[0]}–{n_seeds[-1]}"
        sizes = sorted({c.n_examples for c in comparisons})
        examples_text = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
        notes.append(
            f"Bootstrap CIs are hierarchical: each resample draws seeds with replacement, then test "
            f"examples with replacement (one draw shared by the drawn seeds, which score the same test "
            f"rows), so they include seed-to-seed training variance as well as test-set sampling. "
            f"Median half-width {widths[len(widths) // 2]:.1f} pp on {examples_text} examples and "
            f"{seeds_text} seed{'' if seeds_text == '1' else 's'}."
        )
        if n_seeds[0] < 5:
            notes.append(
                f"With {_count(n_seeds[0], 'seed')} the seed part of a CI rests on that many training runs "
                "(a bootstrap over so few values understates their spread); a 'significant' difference near "
                "the CI edge may not hold with more seeds."
            )
    collapsed = [cell for cell in cells if (cell.get("dynamics") or {}).get("collapsed_epochs")]
    recovered = []
    for cell in collapsed:
        epochs = cell["dynamics"]["collapsed_epochs"]
        if len(cell["dynamics"].get("epochs") or []) - 1 in epochs:
            notes.append(
                f"Collapse: `{cell.get('cell_id', '?')}` had its mean training loss at the "
                f"uniform-prediction loss (ln C) in epoch(s) {epochs}, the last included: it never learned, "
                "its scores are chance-level."
            )
        else:
            recovered.append(f"`{cell.get('cell_id', '?')}` {epochs}")
    if recovered:
        notes.append(
            f"Slow start: {_count(len(recovered), 'cell')} had the mean training loss at the "
            f"uniform-prediction loss (ln C) in early epochs and learned afterwards: {', '.join(recovered)}."
        )
    for cell in cells:
        if cell["status"] != "done":
            notes.append(
                f"Cell `{cell.get('cell_id', '?')}` is {cell['status']} and left out: "
                f"{cell.get('error', 'no error message')}"
            )
    for group in groups.values():
        if len(group.seeds) < len(seeds):
            notes.append(
                f"{group.key.model} · {group.key.method} · {group.key.task} · k={group.key.k_shot} · "
                f"{group.key.curation}: only seeds {group.seeds} of {list(seeds)}."
            )
    for group in groups.values():
        step = group.footprint_mean.get("step_time_median_s")
        spread = group.footprint_std.get("step_time_median_s")
        if step and spread is not None and spread > 0.5 * step:
            notes.append(
                f"{group.key.model} · {group.key.method} · k={group.key.k_shot} · {group.key.curation}: "
                f"median step time varies by more than half its mean across seeds ({step:.3f} ± "
                f"{spread:.3f} s); the machine was probably shared, so read timings with care."
            )
    frozen = [g for g in groups.values() if _lambda_never_moved(g)]
    if frozen:
        notes.append(
            f"λ never left its initial value in {len(frozen)} hybrid cell group(s) (e.g. the mixer's warm-up "
            "outlasted training): the λ figure shows flat lines."
        )
    unjudged = [
        g
        for g in groups.values()
        if g.key.task == "mtbench" and all(v is None for v in (g.mean.get("judge_score") or {}).values())
    ]
    if unjudged:
        notes.append(
            "MT-Bench answers were written but not judged (no LLM judge is called); its row is empty."
        )
    return ["## Notes", "", *[f"- {note}" for note in [*notes, *skipped]], ""]


def _lambda_never_moved(group: CellGroup) -> bool:
    series = [
        values
        for cell in group.cells
        for values in ((cell.get("dynamics") or {}).get("lambda") or {}).values()
    ]
    return bool(series) and all(max(values) - min(values) < 1e-9 for values in series if values)


def _points(value: float) -> str:
    """``+1.2`` / ``−0.8`` (a real minus sign) / ``0.0``."""
    text = f"{value:+.1f}" if round(value, 1) != 0 else "0.0"
    return text.replace("-", "−")


def _bound(value: float) -> str:
    """``3.1`` / ``−0.8``: an interval end, signed only when negative."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text.replace("-", "−")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _headline(groups: Mapping[Any, CellGroup], setting: MainSetting) -> list[str]:
    """The first lines a user reads: per model and classification task at the main setting, the best
    method by macro accuracy, its gain over the untrained k = 0 cell, its parity gap Δ, its ECE before and
    after temperature scaling, and every trained method's gain over k = 0 (seed means, points)."""
    lines = ["## Headline", ""]
    main = [
        g
        for g in groups.values()
        if g.key.k_shot == setting.k_shot
        and g.key.curation == setting.curation
        and g.key.method != "zero-shot"
        and _is_score(g.mean.get("macro"))
    ]
    for model, task in sorted({(g.key.model, g.key.task) for g in main}):
        trained = sorted(
            (g for g in main if (g.key.model, g.key.task) == (model, task)), key=lambda g: -g.mean["macro"]
        )
        best = trained[0]
        untrained = next(
            (
                g
                for g in groups.values()
                if (g.key.model, g.key.task, g.key.method) == (model, task, "zero-shot")
                and g.key.curation == setting.curation
            ),
            None,
        )
        seeds = _count(len(best.seeds), "seed")
        text = (
            f"- {model} · {task} · k = {setting.k_shot}: best method **{best.key.method}**, macro accuracy "
            f"{100 * best.mean['macro']:.1f} % ({seeds})"
        )
        if untrained is not None and _is_score(untrained.mean.get("macro")):
            text += (
                f", {_points(100 * (best.mean['macro'] - untrained.mean['macro']))} "
                "points over the untrained model"
            )
            english = (
                (best.mean.get("accuracy") or {}).get("en"),
                (untrained.mean.get("accuracy") or {}).get("en"),
            )
            if all(_is_score(v) for v in english):
                text += f" ({_points(100 * (english[0] - english[1]))} in English)"
        if _is_score(best.mean.get("delta")):
            text += f"; parity gap Δ {100 * best.mean['delta']:.1f} points"
        before, after = best.mean.get("avg_ece"), best.mean.get("avg_ece_temperature_scaled")
        if _is_score(before):
            text += f"; ECE {100 * before:.1f}" + (
                f" → {100 * after:.1f} after temperature scaling" if _is_score(after) else ""
            )
        lines.append(text + ".")
        if untrained is not None and _is_score(untrained.mean.get("macro")):
            gains = ", ".join(
                f"{g.key.method} {_points(100 * (g.mean['macro'] - untrained.mean['macro']))}"
                for g in trained
            )
            lines.append(f"  Gain over untrained (macro, points): {gains}.")
    if len(lines) == 2:
        return []
    return [*lines, ""]


def _is_score(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _key_differences(
    comparisons: Sequence[Comparison], setting: MainSetting, reference: str, confidence: float
) -> list[str]:
    """Plain-words verdicts at the main setting, near the top of the report."""
    lines = ["## Key differences", ""]
    if not comparisons:
        return lines + [
            f"_No paired comparison: the run has no `{reference}` cells with per-example samples "
            "beside other methods._",
            "",
        ]
    main = [
        c for c in comparisons if c.k_shot == setting.k_shot and c.curation == setting.curation
    ] or comparisons
    lines += [
        f"{reference} minus each other method, in accuracy points, with the {confidence:.0%} CI of a "
        "bootstrap over seeds and test examples; significant = the CI excludes 0"
        + (
            f" (k = {setting.k_shot}, curation {setting.curation or 'none'}; every setting is under "
            "Significance)."
            if main is not comparisons
            else "."
        ),
        "",
    ]
    for c in main:
        verdict = "significant" if c.significant else "not significant"
        where = f"{c.model} · {c.task}" + (
            "" if main is not comparisons else f" · k={c.k_shot} · {c.curation}"
        )
        lines.append(
            f"- {where}: {c.reference} vs {c.other}: {_points(c.mean_difference)} points "
            f"[{_bound(c.low)}, {_bound(c.high)}], {verdict} ({_count(len(c.seeds), 'seed')}, "
            f"{_count(c.n_examples, 'example')})."
        )
    return lines + [""]


def _significance(comparisons: Sequence[Comparison], reference: str, confidence: float) -> list[str]:
    lines = ["## Significance", ""]
    if not comparisons:
        return lines + [
            f"_No paired comparison: the run has no `{reference}` cells with per-example samples "
            "beside other methods._",
            "",
        ]
    lines += [
        f"Hierarchical paired bootstrap of {reference} minus each other method: each resample draws the "
        "seeds both ran (with replacement), then test examples (with replacement, matched by id, the same "
        "examples for both methods and every drawn seed); difference in accuracy points (mean over seeds "
        f"and examples) with its {confidence:.0%} percentile CI; significant means the CI excludes 0.",
        "",
    ]
    rows = [
        [
            c.model,
            c.task,
            str(c.k_shot),
            str(c.curation),
            f"{c.reference} − {c.other}",
            ",".join(map(str, c.seeds)),
            str(c.n_examples),
            f"{c.mean_difference:+.2f}",
            f"[{c.low:+.2f}, {c.high:+.2f}]",
            "yes" if c.significant else "no",
        ]
        for c in comparisons
    ]
    header = [
        "Model",
        "Task",
        "k",
        "Curation",
        "Comparison",
        "Seeds",
        "N",
        "Mean diff (pp)",
        f"{confidence:.0%} CI (pp)",
        "Significant",
    ]
    return lines + [tables.render(header, rows, label_columns=6).rstrip(), ""]


def write_report(
    run_dir: Path,
    reference_method: str = "hybrid",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    progress: bool = True,
) -> Path:
    """Write ``run_dir/report.md`` and ``run_dir/figures/*.png`` from ``run_dir/results.json``.

    reference_method: the method compared against every other in the Significance section.
    Returns the path of report.md. Raises UserError when results.json is missing or malformed.
    """
    from hyft.experiments.figures import FIGURES

    run_dir = Path(run_dir)
    results = load_results(run_dir)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    groups = group_cells(results["cells"])
    setting = main_setting(results)
    run = results["run"]
    comparisons, skipped = compare_methods(
        run_dir, groups, reference_method, n_resamples, confidence, progress
    )
    comparisons.sort(
        key=lambda c: (c.model, c.task, c.k_shot, stage_sort_key(c.curation))
    )  # stable: run order
    intervals, interval_notes = language_intervals(
        run_dir, tables.multilingual_groups(groups, setting), n_resamples, confidence, progress
    )

    lines = [f"# Report: {run.get('name', run_dir.name)}", ""]
    lines += _headline(groups, setting)
    lines += _key_differences(comparisons, setting, reference_method, confidence)
    lines += _setup(results, groups, setting, manifest)
    lines += _search(results)
    lines += _notes(results, groups, comparisons, list(dict.fromkeys([*skipped, *interval_notes])))
    lines += ["## Tables", ""]
    builders = [
        tables.table_general,
        partial(tables.table_multilingual, intervals=intervals, confidence=confidence),
        tables.table_translation,
        tables.table_robustness,
        tables.table_curation,
        tables.table_footprint,
    ]
    lines += [builder(groups, run, setting).rstrip() + "\n" for builder in builders]
    lines += ["## Figures", ""]
    figures_dir = run_dir / "figures"
    for file_name, caption, draw, requirement in FIGURES:
        path = figures_dir / file_name
        if draw(results, path) is None:
            path.unlink(missing_ok=True)  # a figure from an older report would no longer match the data
            lines += [f"_{caption}: skipped ({requirement})._", ""]
        else:
            lines += [f"![{caption}](figures/{file_name})", ""]
    lines += _significance(comparisons, reference_method, confidence)
    report_path = run_dir / "report.md"
    atomic_write_text(report_path, "\n".join(lines).rstrip() + "\n")
    return report_path
