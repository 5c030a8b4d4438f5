"""Group a run's cells over seeds and compare methods: the numbers behind ``report.md``.

Cells that differ only in ``seed`` form one :class:`CellGroup` (docs/results-schema.md). Every number
of their ``eval`` and ``footprint`` dicts is reduced leaf by leaf to a mean and a sample standard
deviation (ddof = 1, None with one seed), giving results-like dicts that the renderers in
:mod:`hyft.evaluation.tables` take unchanged. :func:`compare_methods` runs the hierarchical paired
bootstrap (seeds, then test examples) of a reference method (the hybrid) against every other method, and
:func:`language_intervals` gives per-language accuracy, Macro and Δ intervals, both on per-example
correctness from the cells' samples files; nothing else is recomputed from raw predictions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hyft.evaluation.bootstrap import (
    bootstrap_seed_draws,
    hierarchical_bootstrap_replicates,
    mean_over_drawn_seeds,
    percentile_interval,
)
from hyft.evaluation.metrics import hierarchical_bootstrap_ci

STAGE_ORDER = {"C0": 0, "C1": 1, "C2": 2}
PAPER_K_SHOT = 32  # the paper's main protocol; used as the main setting whenever a run has it


class GroupKey(NamedTuple):
    """Everything that identifies a cell except its seed."""

    model: str
    method: str
    task: str
    k_shot: int
    curation: str | None


@dataclass(frozen=True)
class CellGroup:
    """The done cells of one :class:`GroupKey`, sorted by seed, with their seed means and spreads."""

    key: GroupKey
    cells: tuple[dict[str, Any], ...]
    mean: dict[str, Any] = field(repr=False)  # results-like: the eval dict with every number averaged
    std: dict[str, Any] = field(repr=False)  # same structure; numbers are sample stds (None for 1 seed)
    footprint_mean: dict[str, Any] = field(repr=False)
    footprint_std: dict[str, Any] = field(repr=False)

    @property
    def seeds(self) -> list[int]:
        return [cell["seed"] for cell in self.cells]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mean_std(values: Sequence[Any]) -> tuple[Any, Any]:
    """Leaf-wise (mean, std) of equally shaped JSON values (one per seed).

    Dicts recurse over the union of their keys (first-seen order); numbers give the mean over the seeds
    that have them and the sample std (ddof = 1; None for a single value); None entries are ignored;
    anything else (strings, lists, booleans) is taken from the first value, for both outputs, so labels
    such as ``kind`` or ``metric`` survive into both dicts.
    """
    present = [value for value in values if value is not None]
    if not present:
        return None, None
    if all(isinstance(value, Mapping) for value in present):
        keys: list[str] = []
        for value in present:
            keys += [key for key in value if key not in keys]
        mean, std = {}, {}
        for key in keys:
            mean[key], std[key] = mean_std([value.get(key) for value in present])
        return mean, std
    if all(_is_number(value) for value in present):
        array = np.asarray(present, dtype=np.float64)
        return float(array.mean()), float(array.std(ddof=1)) if array.size >= 2 else None
    return present[0], present[0]


def group_key(cell: Mapping[str, Any]) -> GroupKey:
    """The cell's identity without its seed."""
    return GroupKey(cell["model"], cell["method"], cell["task"], int(cell["k_shot"]), cell.get("curation"))


def group_cells(cells: Iterable[Mapping[str, Any]]) -> dict[GroupKey, CellGroup]:
    """Done cells grouped over seeds, in order of first appearance; failed cells are left out."""
    by_key: dict[GroupKey, list[dict[str, Any]]] = {}
    for cell in cells:
        if cell.get("status") == "done":
            by_key.setdefault(group_key(cell), []).append(dict(cell))
    groups = {}
    for key, members in by_key.items():
        members.sort(key=lambda cell: cell["seed"])
        mean, std = mean_std([cell.get("eval") for cell in members])
        footprint_mean, footprint_std = mean_std([cell.get("footprint") for cell in members])
        groups[key] = CellGroup(
            key, tuple(members), mean or {}, std or {}, footprint_mean or {}, footprint_std or {}
        )
    return groups


def ordered(values: Iterable[Any], preferred: Sequence[Any] = ()) -> list[Any]:
    """Distinct ``values``: those listed in ``preferred`` first (in that order), then the rest as seen."""
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def stage_sort_key(stage: str | None) -> tuple[int, str]:
    """Sort key putting C0 < C1 < C2 after anything else ("none", None)."""
    return (STAGE_ORDER.get(stage or "", -1), stage or "")


@dataclass(frozen=True)
class MainSetting:
    """The slice Tables I–IV and VI and Figures 2–4 show (Table V and Figure 1 vary it)."""

    k_shot: int | None
    curation: str | None
    primary_task: str | None


def main_setting(results: Mapping[str, Any]) -> MainSetting:
    """``run.main_k_shot`` / ``run.train_stage`` / ``run.primary_task`` when the runner wrote them (the k
    only when some cell has it: an interrupted run may not have reached it); else
    k = 32 if any cell has it (the paper's protocol), otherwise the most common k (ties: larger);
    curation = the most common stage (ties: the later stage); primary task = the first task seen.
    Counts include failed cells, so one failure does not move the main setting."""
    run = results.get("run", {})
    planned = results.get("cells", [])  # failed cells count too: the grid's design, not its luck, decides
    if not planned:
        return MainSetting(None, None, run.get("primary_task"))
    k_counts = Counter(int(cell["k_shot"]) for cell in planned)
    k_shot = run.get("main_k_shot")
    if k_shot is not None and int(k_shot) not in k_counts:
        k_shot = None  # an incomplete run has no cell at its planned main k yet: report a k it has
    if k_shot is None:
        k_shot = PAPER_K_SHOT if PAPER_K_SHOT in k_counts else max(k_counts, key=lambda k: (k_counts[k], k))
    stage_counts = Counter(cell.get("curation") for cell in planned)
    curation = run.get("train_stage") or max(stage_counts, key=lambda s: (stage_counts[s], stage_sort_key(s)))
    primary = run.get("primary_task") or planned[0]["task"]
    return MainSetting(int(k_shot), curation, primary)


def headline_score(results: Mapping[str, Any]) -> tuple[float | None, str]:
    """(value, axis label) of a results dict's headline quality: classification macro accuracy (%),
    translation average BLEU, generation the mean of the task metric over languages (%; MT-Bench's
    judge score on its own 1–10 scale)."""
    kind = results.get("kind")
    if kind == "classification":
        macro = results.get("macro")
        return (None if macro is None else 100 * macro), "Macro accuracy (%)"
    if kind == "translation":
        return results.get("avg_bleu"), "Average BLEU"
    metric = results.get("metric", "score")
    scores = [v for v in (results.get(metric) or {}).values() if _is_number(v)]
    if metric == "judge_score":  # MT-Bench: a 1–10 judge score, not a share
        return (float(np.mean(scores)) if scores else None), "MT-Bench score (1–10)"
    return (100 * float(np.mean(scores)) if scores else None), f"{metric} (%)"


# --------------------------------------------------------------------------- paired bootstrap


@dataclass(frozen=True)
class Comparison:
    """Reference minus other method on the same seeds and examples; differences in accuracy points (×100).

    The interval is :func:`hyft.evaluation.metrics.hierarchical_bootstrap_ci` (seeds and test examples
    resampled), so it includes seed-to-seed training variance."""

    model: str
    task: str
    k_shot: int
    curation: str | None
    reference: str
    other: str
    seeds: tuple[int, ...]
    n_examples: int
    mean_difference: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """The confidence interval excludes 0."""
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its bootstrap interval, in percent."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class LanguageIntervals:
    """Per-language accuracy, Macro and Δ of one cell group with hierarchical bootstrap intervals (percent).

    ``accuracy[lang].mean`` is the mean over seeds of the accuracy on the ``n_examples[lang]`` test rows
    every seed scored; Macro is the mean over languages; Δ the mean over seeds of (best − worst language).
    """

    key: GroupKey
    seeds: tuple[int, ...]
    accuracy: dict[str, Interval]
    macro: Interval
    delta: Interval
    n_examples: dict[str, int]


def _sample_score(sample: Mapping[str, Any], where: str) -> float:
    if "passed" in sample:
        return float(bool(sample["passed"]))
    if "gold" in sample and "prediction" in sample:
        return float(sample["prediction"] == sample["gold"])
    raise ValueError(f"{where}: no 'passed' or 'gold'+'prediction' to score")


def example_scores(samples_path: Path) -> dict[str, tuple[str | None, float]]:
    """``{example id: (lang or None, 1.0 or 0.0)}`` from a samples JSONL, scored as
    :func:`example_correctness`."""
    scores: dict[str, tuple[str | None, float]] = {}
    with samples_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                sample = json.loads(line)
                scores[str(sample["id"])] = (
                    sample.get("lang"),
                    _sample_score(sample, f"{samples_path}:{number}"),
                )
    return scores


def example_correctness(samples_path: Path) -> dict[str, float]:
    """``{example id: 1.0 or 0.0}`` from a samples JSONL: ``passed`` when present (code), else
    ``prediction == gold`` (classification). A line with neither raises ValueError naming the line."""
    return {example_id: score for example_id, (_, score) in example_scores(samples_path).items()}


def paired_matrices(
    reference: Sequence[Mapping[str, float]], other: Sequence[Mapping[str, float]]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-example correctness of two methods as two (S, N) arrays, row s = the s-th shared seed.

    ``reference[s]`` and ``other[s]`` are ``{example id: score}`` of the two methods at the same seed. The
    N columns are the ids scored by both methods in every seed, in the reference's first-seen order, so
    column i is the same example in every row of both arrays. Also returns how many ids were scored by
    both in some seeds but not all (left out).
    """
    if len(reference) != len(other) or not reference:
        raise ValueError(
            f"paired_matrices: need the same non-zero number of seeds, got {len(reference)} and {len(other)}"
        )
    per_seed_ids = [[i for i in ref if i in oth] for ref, oth in zip(reference, other, strict=True)]
    common = set(per_seed_ids[0]).intersection(*per_seed_ids[1:])
    ids = [i for i in per_seed_ids[0] if i in common]
    partial = len(set().union(*per_seed_ids)) - len(ids)
    a = np.asarray([[seed[i] for i in ids] for seed in reference], dtype=np.float64).reshape(
        len(reference), -1
    )
    b = np.asarray([[seed[i] for i in ids] for seed in other], dtype=np.float64).reshape(len(other), -1)
    return a, b, partial


class _SamplesCache:
    """Reads each samples file once; records why a cell has no per-example scores."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.notes = run_dir, []
        self._cache: dict[Path, dict[str, tuple[str | None, float]]] = {}

    def __call__(self, cell: Mapping[str, Any]) -> dict[str, tuple[str | None, float]] | None:
        relative = cell.get("samples_path")
        path = self.run_dir / relative if relative else None
        if path is None or not path.is_file():
            self.notes.append(
                f"{cell.get('cell_id', group_key(cell))}: samples file {relative!r} not found; skipped"
            )
            return None
        if path not in self._cache:
            try:
                self._cache[path] = example_scores(path)
            except ValueError as exc:
                self.notes.append(f"{exc}; comparisons and intervals on this cell skipped")
                return None
        return self._cache[path]


def compare_methods(
    run_dir: Path,
    groups: Mapping[GroupKey, CellGroup],
    reference: str = "hybrid",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    progress: bool = True,
) -> tuple[list[Comparison], list[str]]:
    """Hierarchical paired bootstrap of ``reference`` against every other method in each
    (model, task, k, curation): seeds, then test examples, resampled with replacement.

    Only seeds both groups have, and examples both scored in all of them, are used (:func:`paired_matrices`);
    the two methods are paired on the seed index (same shots and test rows). Returns the comparisons and
    notes on what was skipped (missing samples files, tasks without per-example correctness such as BLEU,
    nothing shared, examples not scored in every seed).
    """
    from tqdm import tqdm

    samples = _SamplesCache(run_dir)
    notes: list[str] = []

    def correctness(cell: Mapping[str, Any]) -> dict[str, float] | None:
        scores = samples(cell)
        return None if scores is None else {example_id: score for example_id, (_, score) in scores.items()}

    pairs = [
        (ref, other)
        for ref in groups.values()
        if ref.key.method == reference
        for other in groups.values()
        if other.key.method != reference and other.key._replace(method=reference) == ref.key
    ]
    comparisons = []
    for ref, other in tqdm(pairs, desc="paired bootstrap", disable=not progress or None):
        if ref.mean.get("kind") == "translation":
            notes.append(
                f"{ref.key.task}: translation has no per-example correctness (BLEU is corpus-level); "
                "no bootstrap"
            )
            continue
        seeds = [s for s in ref.seeds if s in other.seeds]
        ref_by_seed = {cell["seed"]: cell for cell in ref.cells}
        other_by_seed = {cell["seed"]: cell for cell in other.cells}
        ref_scores = [correctness(ref_by_seed[s]) for s in seeds]
        other_scores = [correctness(other_by_seed[s]) for s in seeds]
        if not seeds or any(s is None for s in ref_scores + other_scores):
            continue
        a, b, partial = paired_matrices(ref_scores, other_scores)
        label = (
            f"{ref.key.model} · {ref.key.task} · k={ref.key.k_shot} · {ref.key.curation}: {reference} vs "
            f"{other.key.method}"
        )
        if a.shape[1] == 0:
            notes.append(f"{label}: no example id scored by both in every seed; skipped")
            continue
        if partial:
            notes.append(
                f"{label}: {partial} example(s) scored in some seeds only were left out of the bootstrap"
            )
        mean, low, high = hierarchical_bootstrap_ci(
            a, b, n_resamples=n_resamples, confidence=confidence, seed=0
        )
        comparisons.append(
            Comparison(
                ref.key.model,
                ref.key.task,
                ref.key.k_shot,
                ref.key.curation,
                reference,
                other.key.method,
                tuple(seeds),
                int(a.shape[1]),
                100 * mean,
                100 * low,
                100 * high,
            )
        )
    return comparisons, list(dict.fromkeys(samples.notes + notes))


def _interval(replicates: np.ndarray, mean: float, confidence: float) -> Interval:
    low, high = percentile_interval(replicates, confidence)
    return Interval(100 * mean, 100 * low, 100 * high)


def group_language_intervals(
    per_seed: Sequence[Mapping[str, Mapping[str, float]]],
    key: GroupKey,
    seeds: Sequence[int],
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> LanguageIntervals | None:
    """Hierarchical bootstrap intervals of one group's per-language accuracy, Macro and Δ.

    per_seed: one ``{lang: {example id: 0/1}}`` per seed (in ``seeds`` order). Each language becomes an
    (S, N_lang) matrix of the ids every seed scored. One seed draw (S indices with replacement,
    :func:`bootstrap_seed_draws`) is shared by all languages of a resample, and each language resamples
    its own examples (:func:`hierarchical_bootstrap_replicates`, example seed = language index), so a
    resample's Macro and Δ are computed per drawn seed from languages of that same seed:
    Macro*_b = (1/S) Σ_k mean_l acc*_l[j_bk, b], Δ*_b = (1/S) Σ_k (max_l − min_l) acc*_l[j_bk, b].
    Returns None when no language was scored in every seed.
    """
    languages = [lang for lang in per_seed[0] if all(lang in seed for seed in per_seed[1:])]
    matrices = {}
    for lang in languages:
        common = set(per_seed[0][lang]).intersection(*(seed[lang] for seed in per_seed[1:]))
        ids = [i for i in per_seed[0][lang] if i in common]
        if ids:
            matrices[lang] = np.asarray([[seed[lang][i] for i in ids] for seed in per_seed], dtype=np.float64)
    if not matrices:
        return None
    draws = bootstrap_seed_draws(len(per_seed), n_resamples, seed=0)
    replicates = np.stack(
        [
            hierarchical_bootstrap_replicates(matrix, n_resamples, seed=index)
            for index, matrix in enumerate(matrices.values())
        ]
    )  # (L, S, B)
    seed_means = np.stack([matrix.mean(axis=1) for matrix in matrices.values()])  # (L, S)
    accuracy = {
        lang: _interval(
            mean_over_drawn_seeds(replicates[index], draws), float(seed_means[index].mean()), confidence
        )
        for index, lang in enumerate(matrices)
    }
    macro = _interval(
        mean_over_drawn_seeds(replicates.mean(axis=0), draws), float(seed_means.mean()), confidence
    )
    spread = replicates.max(axis=0) - replicates.min(axis=0)
    delta = _interval(
        mean_over_drawn_seeds(spread, draws),
        float((seed_means.max(axis=0) - seed_means.min(axis=0)).mean()),
        confidence,
    )
    return LanguageIntervals(
        key,
        tuple(seeds),
        accuracy,
        macro,
        delta,
        {lang: matrix.shape[1] for lang, matrix in matrices.items()},
    )


def language_intervals(
    run_dir: Path,
    groups: Iterable[CellGroup],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    progress: bool = True,
) -> tuple[dict[GroupKey, LanguageIntervals], list[str]]:
    """:func:`group_language_intervals` for each classification group, from its cells' samples files
    (per-example ``lang`` and correctness). Returns the intervals and notes on groups left without."""
    from tqdm import tqdm

    samples = _SamplesCache(run_dir)
    notes: list[str] = []
    out = {}
    for group in tqdm(list(groups), desc="language intervals", disable=not progress or None):
        scored = [scores for scores in map(samples, group.cells) if scores is not None]
        if len(scored) < len(group.cells):
            continue
        per_seed: list[dict[str, dict[str, float]]] = []
        for scores in scored:
            by_lang: dict[str, dict[str, float]] = {}
            for example_id, (lang, score) in scores.items():
                by_lang.setdefault(lang if lang is not None else "?", {})[example_id] = score
            per_seed.append(by_lang)
        intervals = group_language_intervals(per_seed, group.key, group.seeds, n_resamples, confidence)
        if intervals is None:
            notes.append(
                f"{group.key.model} · {group.key.method} · {group.key.task}: no language scored in every "
                "seed; no intervals"
            )
        else:
            out[group.key] = intervals
    return out, list(dict.fromkeys(samples.notes + notes))
