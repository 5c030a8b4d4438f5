"""Group a run's cells over seeds and compare methods: the numbers behind ``report.md``.

Cells that differ only in ``seed`` form one :class:`CellGroup` (docs/results-schema.md). Every number
of their ``eval`` and ``footprint`` dicts is reduced leaf by leaf to a mean and a sample standard
deviation (ddof = 1, None with one seed), giving results-like dicts that the renderers in
:mod:`hyft.evaluation.tables` take unchanged. :func:`compare_methods` runs the paired bootstrap of a
reference method (the hybrid) against every other method on per-example correctness from the cells'
samples files; nothing else is recomputed from raw predictions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hyft.evaluation.metrics import paired_bootstrap_ci

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
        groups[key] = CellGroup(key, tuple(members), mean or {}, std or {}, footprint_mean or {}, footprint_std or {})
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
    """``run.main_k_shot`` / ``run.train_stage`` / ``run.primary_task`` when the runner wrote them; else
    k = 32 if any cell has it (the paper's protocol), otherwise the most common k (ties: larger);
    curation = the most common stage (ties: the later stage); primary task = the first task seen.
    Counts include failed cells, so one failure does not move the main setting."""
    run = results.get("run", {})
    planned = results.get("cells", [])  # failed cells count too: the grid's design, not its luck, decides
    if not planned:
        return MainSetting(None, None, run.get("primary_task"))
    k_counts = Counter(int(cell["k_shot"]) for cell in planned)
    k_shot = run.get("main_k_shot")
    if k_shot is None:
        k_shot = PAPER_K_SHOT if PAPER_K_SHOT in k_counts else max(k_counts, key=lambda k: (k_counts[k], k))
    stage_counts = Counter(cell.get("curation") for cell in planned)
    curation = run.get("train_stage") or max(stage_counts, key=lambda s: (stage_counts[s], stage_sort_key(s)))
    primary = run.get("primary_task") or planned[0]["task"]
    return MainSetting(int(k_shot), curation, primary)


def headline_score(results: Mapping[str, Any]) -> tuple[float | None, str]:
    """(value, axis label) of a results dict's headline quality: classification macro accuracy (%),
    translation average BLEU, generation the mean of the task metric over languages (%)."""
    kind = results.get("kind")
    if kind == "classification":
        macro = results.get("macro")
        return (None if macro is None else 100 * macro), "Macro accuracy (%)"
    if kind == "translation":
        return results.get("avg_bleu"), "Average BLEU"
    metric = results.get("metric", "score")
    scores = [v for v in (results.get(metric) or {}).values() if _is_number(v)]
    return (100 * float(np.mean(scores)) if scores else None), f"{metric} (%)"


# --------------------------------------------------------------------------- paired bootstrap


@dataclass(frozen=True)
class Comparison:
    """Reference minus other method on the same examples; differences in accuracy points (×100)."""

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


def example_correctness(samples_path: Path) -> dict[str, float]:
    """``{example id: 1.0 or 0.0}`` from a samples JSONL: ``passed`` when present (code), else
    ``prediction == gold`` (classification). A line with neither raises ValueError naming the line."""
    correct: dict[str, float] = {}
    with samples_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            sample = json.loads(line)
            if "passed" in sample:
                correct[str(sample["id"])] = float(bool(sample["passed"]))
            elif "gold" in sample and "prediction" in sample:
                correct[str(sample["id"])] = float(sample["prediction"] == sample["gold"])
            else:
                raise ValueError(f"{samples_path}:{number}: no 'passed' or 'gold'+'prediction' to score")
    return correct


def paired_scores(
    reference: Sequence[Mapping[str, float]], other: Sequence[Mapping[str, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness of two methods, seed by seed matched on example id, then averaged over
    the seeds in which each id was scored by both; returns two (N,) arrays in first-seen id order."""
    sums: dict[str, list[float]] = {}
    for ref_seed, other_seed in zip(reference, other, strict=True):
        for example_id, ref_value in ref_seed.items():
            if example_id in other_seed:
                entry = sums.setdefault(example_id, [0.0, 0.0, 0.0])
                entry[0] += ref_value
                entry[1] += other_seed[example_id]
                entry[2] += 1
    values = np.asarray(list(sums.values()), dtype=np.float64).reshape(-1, 3)
    return values[:, 0] / values[:, 2], values[:, 1] / values[:, 2]


def compare_methods(
    run_dir: Path, groups: Mapping[GroupKey, CellGroup], reference: str = "hybrid", n_resamples: int = 1000,
    confidence: float = 0.95, progress: bool = True,
) -> tuple[list[Comparison], list[str]]:
    """Paired bootstrap of ``reference`` against every other method in each (model, task, k, curation).

    Only seeds both groups have are used. Returns the comparisons and notes on what was skipped (missing
    samples files, tasks without per-example correctness such as BLEU, nothing shared).
    """
    from tqdm import tqdm

    cache: dict[Path, dict[str, float]] = {}
    notes: list[str] = []

    def correctness(cell: Mapping[str, Any]) -> dict[str, float] | None:
        relative = cell.get("samples_path")
        path = run_dir / relative if relative else None
        if path is None or not path.is_file():
            notes.append(f"{cell.get('cell_id', group_key(cell))}: samples file {relative!r} not found; skipped")
            return None
        if path not in cache:
            try:
                cache[path] = example_correctness(path)
            except ValueError as exc:
                notes.append(f"{exc}; comparisons on this cell skipped")
                return None
        return cache[path]

    pairs = [(ref, other) for ref in groups.values() if ref.key.method == reference
             for other in groups.values() if other.key.method != reference
             and other.key._replace(method=reference) == ref.key]
    comparisons = []
    for ref, other in tqdm(pairs, desc="paired bootstrap", disable=not progress or None):
        if ref.mean.get("kind") == "translation":
            notes.append(f"{ref.key.task}: translation has no per-example correctness (BLEU is corpus-level); "
                         "no bootstrap")
            continue
        seeds = [s for s in ref.seeds if s in other.seeds]
        ref_by_seed = {cell["seed"]: cell for cell in ref.cells}
        other_by_seed = {cell["seed"]: cell for cell in other.cells}
        ref_scores = [correctness(ref_by_seed[s]) for s in seeds]
        other_scores = [correctness(other_by_seed[s]) for s in seeds]
        if not seeds or any(s is None for s in ref_scores + other_scores):
            continue
        a, b = paired_scores(ref_scores, other_scores)
        if a.size == 0:
            notes.append(f"{ref.key} vs {other.key.method}: no example id in common; skipped")
            continue
        mean, low, high = paired_bootstrap_ci(a, b, n_resamples=n_resamples, confidence=confidence, seed=0)
        comparisons.append(Comparison(ref.key.model, ref.key.task, ref.key.k_shot, ref.key.curation, reference,
                                      other.key.method, tuple(seeds), int(a.size), 100 * mean, 100 * low,
                                      100 * high))
    return comparisons, list(dict.fromkeys(notes))
