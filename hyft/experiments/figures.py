"""Figures 1–4 of the paper and the hybrid's λ per layer, drawn from results.json with matplotlib (Agg).

Each ``figure_*(results, out_path)`` writes one PNG and returns its path, or returns None (writing
nothing) when the run has no data for it. Lines are means over seeds; shaded bands or error bars are
± one sample std where there are two or more seeds. Output is deterministic for the same input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from hyft.experiments.aggregate import (  # noqa: E402
    CellGroup,
    group_cells,
    headline_score,
    main_setting,
    mean_std,
    ordered,
)
from hyft.io import atomic_save  # noqa: E402

GB = 1e9
DPI = 110


def pareto_front(costs: Sequence[float], qualities: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (lower cost and higher quality are better), sorted by cost.

    Point i is dominated when some j has cost_j ≤ cost_i and quality_j ≥ quality_i with one of the two
    strict; equal points are both kept. O(N²), fine for one point per method and model.
    """
    if len(costs) != len(qualities):
        raise ValueError(f"pareto_front: {len(costs)} costs but {len(qualities)} qualities")
    front = []
    for i, (cost_i, quality_i) in enumerate(zip(costs, qualities, strict=True)):
        dominated = any(
            cost_j <= cost_i and quality_j >= quality_i and (cost_j < cost_i or quality_j > quality_i)
            for cost_j, quality_j in zip(costs, qualities, strict=True)
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (costs[i], -qualities[i], i))


def _save(fig: Any, out_path: Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # No "Software" stamp: the PNG bytes depend only on the data and the matplotlib version.
    atomic_save(out_path, lambda tmp: fig.savefig(tmp, dpi=DPI, metadata={"Software": None}))
    plt.close(fig)
    return out_path


def _label(group: CellGroup, models: Sequence[str]) -> str:
    return group.key.method if len(models) <= 1 else f"{group.key.method} · {group.key.model}"


def _primary_groups(results: Mapping[str, Any], any_k: bool = False) -> tuple[list[CellGroup], Any]:
    """Groups of the primary task at the main curation stage (and main k unless ``any_k``), run order."""
    setting = main_setting(results)
    groups = [
        g
        for g in group_cells(results.get("cells", [])).values()
        if g.key.task == setting.primary_task
        and g.key.curation == setting.curation
        and (any_k or g.key.k_shot == setting.k_shot)
    ]
    run = results.get("run", {})
    method_rank = {
        m: i for i, m in enumerate(ordered((g.key.method for g in groups), run.get("methods", ())))
    }
    model_rank = {m: i for i, m in enumerate(ordered((g.key.model for g in groups), run.get("models", ())))}
    groups.sort(key=lambda g: (model_rank[g.key.model], method_rank[g.key.method], g.key.k_shot))
    return groups, setting


def figure_1_fewshot_scaling(results: Mapping[str, Any], out_path: Path) -> Path | None:
    """Figure 1: headline score (macro accuracy) of the primary task against k shots, one line per method
    (and model); needs at least two k values. k = 0 trains nothing, so the runner's single k = 0 cell of a
    model (a method label such as ``zero-shot``) starts every method's line of that model."""
    groups, setting = _primary_groups(results, any_k=True)
    if len({g.key.k_shot for g in groups}) < 2:
        return None
    models = ordered(g.key.model for g in groups)
    trained = ordered(g.key.method for g in groups if g.key.k_shot > 0)
    untrained = {g.key.model: g for g in groups if g.key.k_shot == 0 and g.key.method not in trained}
    all_ks = sorted({g.key.k_shot for g in groups})
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ylabel = "score"
    lines = [
        [g for g in groups if g.key.method == method and g.key.model == model]
        for model in models
        for method in trained
    ] or [[g] for g in untrained.values()]
    for line in (sorted(line, key=lambda g: g.key.k_shot) for line in lines if line):
        if line[0].key.k_shot > 0 and line[0].key.model in untrained:
            line.insert(0, untrained[line[0].key.model])
        stats = [mean_std([headline_score(c["eval"])[0] for c in g.cells]) for g in line]
        ylabel = headline_score(line[-1].mean)[1]
        means = [np.nan if m is None else m for m, _ in stats]
        stds = [0.0 if s is None else s for _, s in stats]
        ax.errorbar(
            [all_ks.index(g.key.k_shot) for g in line],
            means,
            yerr=stds,
            marker="o",
            capsize=3,
            label=_label(line[-1], models),
        )
    ax.set_xticks(range(len(all_ks)), [str(k) for k in all_ks])  # evenly spaced, as in the paper
    ax.set_xlabel("shots per language (k)" + (" · k = 0: base model, shared" if untrained else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(f"Few-shot scaling · {setting.primary_task} · curation {setting.curation}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_path)


def figure_2_cost_quality(results: Mapping[str, Any], out_path: Path) -> Path | None:
    """Figure 2: step time and peak memory (x, lower is better) against the headline score (y), one point
    per method and model; the Pareto front is drawn as a dashed line through ringed points."""
    groups, setting = _primary_groups(results)
    points = [(g, headline_score(g.mean)[0]) for g in groups]
    points = [(g, q) for g, q in points if q is not None and g.footprint_mean]
    if not points:
        return None
    models = ordered(g.key.model for g, _ in points)
    panels = [
        ("step_time_median_s", 1.0, "median step time (s)"),
        ("peak_memory_bytes", 1 / GB, "peak memory (GB)"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for ax, (key, scale, xlabel) in zip(axes, panels, strict=True):
        usable = [(g, q) for g, q in points if g.footprint_mean.get(key) is not None]
        costs = [g.footprint_mean[key] * scale for g, _ in usable]
        qualities = [q for _, q in usable]
        for (g, q), cost in zip(usable, costs, strict=True):
            ax.scatter(cost, q, s=36, zorder=3)
            ax.annotate(_label(g, models), (cost, q), textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = pareto_front(costs, qualities) if usable else []
        if front:
            ax.plot(
                [costs[i] for i in front], [qualities[i] for i in front], "k--", lw=1, label="Pareto front"
            )
            ax.scatter(
                [costs[i] for i in front],
                [qualities[i] for i in front],
                s=140,
                facecolors="none",
                edgecolors="k",
                zorder=4,
            )
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(headline_score(usable[0][0].mean)[1] if usable else "score")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Cost–quality frontier · {setting.primary_task} · k={setting.k_shot} (upper-left is better)",
        fontsize=10,
    )
    return _save(fig, out_path)


def _epoch_series(group: CellGroup, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and std over seeds of ``dynamics.epochs[*][key]`` (epochs cut to the shortest seed)."""
    series = []
    for cell in group.cells:
        epochs = (cell.get("dynamics") or {}).get("epochs") or []
        values = [e.get(key) for e in epochs]
        if values and None not in values:
            series.append(values)
    if not series:
        return None
    length = min(len(s) for s in series)
    array = np.asarray([s[:length] for s in series], dtype=np.float64)
    std = array.std(axis=0, ddof=1) if len(series) >= 2 else np.zeros(length)
    return array.mean(axis=0), std


def _epoch_panels(
    results: Mapping[str, Any], out_path: Path, panels: Sequence[tuple[str, float, str]], title: str
) -> Path | None:
    groups, setting = _primary_groups(results)
    models = ordered(g.key.model for g in groups)
    if not any(_epoch_series(g, key) for g in groups for key, _, _ in panels):
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.6))
    for ax, (key, scale, ylabel) in zip(np.atleast_1d(axes), panels, strict=True):
        for group in groups:
            stats = _epoch_series(group, key)
            if stats is None:
                continue
            mean, std = stats[0] * scale, stats[1] * scale
            epochs = np.arange(1, len(mean) + 1)
            ax.plot(epochs, mean, marker="o", ms=3, label=_label(group, models))
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.15)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} · {setting.primary_task} · k={setting.k_shot}", fontsize=10)
    return _save(fig, out_path)


def figure_3_epoch_cost(results: Mapping[str, Any], out_path: Path) -> Path | None:
    """Figure 3: per-epoch training time (s) and peak memory (GB) per method (two panels)."""
    panels = [("epoch_time_s", 1.0, "epoch time (s)"), ("peak_memory_bytes", 1 / GB, "peak memory (GB)")]
    return _epoch_panels(results, out_path, panels, "Per-epoch cost")


def figure_4_training_dynamics(results: Mapping[str, Any], out_path: Path) -> Path | None:
    """Figure 4: mean gradient norm and validation loss per epoch per method (two panels)."""
    panels = [("grad_norm", 1.0, "gradient norm (epoch mean)"), ("val_loss", 1.0, "validation loss")]
    return _epoch_panels(results, out_path, panels, "Training dynamics")


def figure_lambda_per_layer(
    results: Mapping[str, Any], out_path: Path, method: str = "hybrid"
) -> Path | None:
    """λ (LoRA-GA share of the hybrid update) per layer over optimizer steps, one line per layer, one
    panel per model; the mean over seeds whose logs have equal length, else the first seed."""
    groups, setting = _primary_groups(results)
    groups = [
        g
        for g in groups
        if g.key.method == method and any((c.get("dynamics") or {}).get("lambda") for c in g.cells)
    ]
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        logs = [(c.get("dynamics") or {}).get("lambda") or {} for c in group.cells]
        logs = [log for log in logs if log]
        layers = list(logs[0])
        colours = plt.get_cmap("viridis")(np.linspace(0, 1, max(len(layers), 2)))
        for index, layer in enumerate(layers):
            runs = [log[layer] for log in logs if layer in log]
            same = all(len(r) == len(runs[0]) for r in runs)
            values = np.mean(np.asarray(runs, dtype=np.float64), axis=0) if same else np.asarray(runs[0])
            ax.plot(np.arange(len(values)), values, color=colours[index], lw=1, label=layer)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("λ (LoRA-GA share)")
        ax.set_title(f"{group.key.model}: {len(layers)} layers (colour = order)", fontsize=9)
        ax.grid(alpha=0.3)
        if len(layers) <= 10:
            ax.legend(fontsize=6)
    fig.suptitle(f"Hybrid mixing weight per layer · {setting.primary_task} · k={setting.k_shot}", fontsize=10)
    return _save(fig, out_path)


# (file name under figures/, caption, function, why it can be missing)
FIGURES = (
    (
        "fig1_fewshot_scaling.png",
        "Figure 1: few-shot scaling (macro score against k)",
        figure_1_fewshot_scaling,
        "needs the primary task at two or more k values",
    ),
    (
        "fig2_cost_quality.png",
        "Figure 2: cost–quality frontier, Pareto front dashed",
        figure_2_cost_quality,
        "needs cells with a footprint and a headline score",
    ),
    (
        "fig3_epoch_cost.png",
        "Figure 3: per-epoch time and peak memory",
        figure_3_epoch_cost,
        "needs dynamics.epochs with epoch_time_s / peak_memory_bytes",
    ),
    (
        "fig4_training_dynamics.png",
        "Figure 4: gradient norm and validation loss",
        figure_4_training_dynamics,
        "needs dynamics.epochs with grad_norm / val_loss",
    ),
    (
        "lambda_per_layer.png",
        "Hybrid λ per layer over training",
        figure_lambda_per_layer,
        "needs a hybrid cell with dynamics.lambda",
    ),
)
