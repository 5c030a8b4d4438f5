"""Paired bootstrap confidence intervals for the difference between two methods on the same examples.

:func:`paired_bootstrap_ci` covers example sampling only (which test items were drawn) for one vector
of per-example scores. :func:`hierarchical_bootstrap_ci` takes one row of scores per training seed and
resamples seeds as well as examples, so its interval also covers seed-to-seed training variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hyft.evaluation.calibration import _as_array

# Resample in blocks so memory stays ≈ 16 MB whatever N × n_resamples is.
_BLOCK_ELEMENTS = 2_000_000


def _as_vector(values: Any, name: str) -> np.ndarray:
    vector = _as_array(values, np.float64)
    if vector.ndim != 1:
        raise ValueError(
            f"paired_bootstrap_ci: {name} must be one value per example, got shape {vector.shape}"
        )
    return vector


def paired_bootstrap_ci(
    scores_a: Sequence[float] | Any,
    scores_b: Sequence[float] | Any,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean difference of per-example scores and its percentile bootstrap interval.

    scores_a, scores_b: (N,) metric values of methods A and B on the same N examples (0/1 for accuracy).
    d_i = a_i − b_i; returns (mean(d), low, high) where, over ``n_resamples`` resamples of N example indices
    drawn with replacement (the same indices for A and B, hence "paired"), low and high are the
    (1−confidence)/2 and (1+confidence)/2 quantiles of the resampled mean(d). Deterministic given ``seed``.
    """
    a = _as_vector(scores_a, "scores_a")
    b = _as_vector(scores_b, "scores_b")
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"paired_bootstrap_ci: need two equal non-empty vectors, got {a.shape} and {b.shape}"
        )
    if not 0 < confidence < 1 or n_resamples < 1:
        raise ValueError("paired_bootstrap_ci: need 0 < confidence < 1 and n_resamples ≥ 1")
    difference = a - b
    n = difference.size
    rng = np.random.default_rng(seed)
    resampled_means = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        resampled_means[start:stop] = difference[indices].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(resampled_means, [alpha / 2, 1 - alpha / 2])
    return float(difference.mean()), float(low), float(high)


# --------------------------------------------------------------------------- seeds × examples


def _as_seed_matrix(values: Any, name: str) -> np.ndarray:
    matrix = _as_array(values, np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(
            f"hierarchical bootstrap: {name} must be a non-empty [seeds, examples] array, "
            f"got shape {matrix.shape}"
        )
    return matrix


def bootstrap_seed_draws(n_seeds: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_resamples, n_seeds) seed indices drawn with replacement: ``default_rng([seed, 1]).integers``.

    Statistics that must move together share one draw (e.g. the languages of one method, so that a
    resample's Macro averages languages of the same chosen seeds; see :func:`mean_over_drawn_seeds`).
    """
    if n_seeds < 1 or n_resamples < 1:
        raise ValueError(
            f"bootstrap_seed_draws: need n_seeds ≥ 1 and n_resamples ≥ 1, got {n_seeds}, {n_resamples}"
        )
    return np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(n_resamples, n_seeds))


def hierarchical_bootstrap_replicates(scores: Any, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(S, n_resamples) per-seed means of ``scores`` (S seeds × N examples) on resampled examples.

    Replicate b draws one vector of N example indices i*_b with replacement (``default_rng(seed)``, in the
    same blocks and order as :func:`paired_bootstrap_ci`) and applies it to every seed row:
    out[s, b] = (1/N) Σ_m scores[s, i*_b,m]. All rows share the draw because every seed scores the same
    test rows; pair it with :func:`bootstrap_seed_draws` to resample seeds.
    """
    matrix = _as_seed_matrix(scores, "scores")
    if n_resamples < 1:
        raise ValueError("hierarchical bootstrap: need n_resamples ≥ 1")
    n_seeds, n = matrix.shape
    rng = np.random.default_rng(seed)
    per_seed = np.empty((n_seeds, n_resamples), dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        for row in range(n_seeds):
            per_seed[row, start:stop] = matrix[row][indices].mean(axis=1)
    return per_seed


def mean_over_drawn_seeds(per_seed: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """(B,) replicate statistics θ*_b = (1/S) Σ_k per_seed[j_bk, b] from per_seed (S, B)
    and seed_draws (B, S)."""
    return np.take_along_axis(per_seed.T, seed_draws, axis=1).mean(axis=1)


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The (1−confidence)/2 and (1+confidence)/2 quantiles of (B,) bootstrap replicates."""
    if not 0 < confidence < 1:
        raise ValueError("percentile_interval: need 0 < confidence < 1")
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def hierarchical_bootstrap_ci(
    scores_a: Any,
    scores_b: Any | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean (difference) of per-example scores over seeds and examples, with a seed-and-example bootstrap CI.

    scores_a, scores_b: (S, N) arrays, row s = one training seed, column i = one test example, the same
    example in every row and in both arrays (0/1 for accuracy); method A and B at seed index s are paired
    (same shots, same test rows). Without ``scores_b`` the statistic is A's own mean.

    With d = a − b (or d = a), the estimate is θ = (1/S) Σ_s (1/N) Σ_i d[s, i], the mean over seeds of
    the per-seed mean. Replicate b resamples both levels with replacement: seeds j_b1 … j_bS from {1 … S}
    (:func:`bootstrap_seed_draws`) and examples i*_b1 … i*_bN from {1 … N}
    (:func:`hierarchical_bootstrap_replicates`), then

        θ*_b = (1/S) Σ_k (1/N) Σ_m d[j_bk, i*_bm].

    The example draw is shared by the drawn seeds because the test rows are shared (a crossed design: an
    independent draw per seed would treat the same test items as fresh ones in every seed and shrink the
    example part of the variance by S). Returns (θ, low, high), low/high the (1−confidence)/2 and
    (1+confidence)/2 quantiles of θ*. With one seed, or identical rows, it equals
    :func:`paired_bootstrap_ci` on one row; a difference constant over seeds and examples gives a
    zero-width interval at that constant. Deterministic given ``seed``.
    """
    a = _as_seed_matrix(scores_a, "scores_a")
    if scores_b is not None:
        b = _as_seed_matrix(scores_b, "scores_b")
        if a.shape != b.shape:
            raise ValueError(f"hierarchical_bootstrap_ci: scores_a {a.shape} and scores_b {b.shape} differ")
        a = a - b
    if not 0 < confidence < 1 or n_resamples < 1:
        raise ValueError("hierarchical_bootstrap_ci: need 0 < confidence < 1 and n_resamples ≥ 1")
    per_seed = hierarchical_bootstrap_replicates(a, n_resamples, seed)
    replicates = mean_over_drawn_seeds(per_seed, bootstrap_seed_draws(a.shape[0], n_resamples, seed))
    low, high = percentile_interval(replicates, confidence)
    return float(a.mean()), low, high
