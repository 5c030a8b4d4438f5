"""Paired bootstrap confidence interval for the difference between two methods on the same examples.

This interval covers example sampling only (which test items were drawn); seed-to-seed training variance
is a separate interval and is reported separately.
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
        raise ValueError(f"paired_bootstrap_ci: {name} must be one value per example, got shape {vector.shape}")
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
        raise ValueError(f"paired_bootstrap_ci: need two equal non-empty vectors, got {a.shape} and {b.shape}")
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
