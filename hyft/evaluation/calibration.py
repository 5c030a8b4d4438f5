"""Post-hoc temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks").

One scalar T > 0 is fitted on a dev split by minimising the negative log-likelihood of softmax(z / T);
it changes confidences, never the argmax, so accuracy is unchanged. numpy only, float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_array(values: Any, dtype: Any = None) -> np.ndarray:
    """numpy copy/view of a list, array or torch tensor
    (detached, on CPU; half/bfloat16 widened to float32)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
        if values.dtype.is_floating_point and values.element_size() < 4:
            values = values.float()  # numpy has no bfloat16
    return np.asarray(values, dtype=dtype)


def _softmax(scaled_logits: np.ndarray) -> np.ndarray:
    shifted = scaled_logits - scaled_logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(logits / T).

    logits: (N, C) array or tensor; returns a float64 numpy array (N, C) whose rows sum to 1.
    """
    if not temperature > 0:
        raise ValueError(f"apply_temperature: temperature must be > 0, got {temperature}")
    z = _as_array(logits, np.float64)
    if z.ndim != 2:
        raise ValueError(f"apply_temperature: logits must be (N, C), got shape {z.shape}")
    return _softmax(z / temperature)


def _nll_slope_and_curvature(z: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float]:
    """First and second derivative in β = 1/T of NLL(β) = mean_i [logsumexp(β z_i) − β z_i,y_i].

    d/dβ = mean_i (E_p[z_i] − z_i,y_i) and d²/dβ² = mean_i Var_p[z_i] ≥ 0 with p = softmax(β z_i),
    so NLL is convex in β and the root of the slope is the unique minimum.
    """
    p = _softmax(beta * z)
    expected = (p * z).sum(axis=1)
    slope = float((expected - z[np.arange(len(y)), y]).mean())
    curvature = float(((p * z * z).sum(axis=1) - expected**2).mean())
    return slope, curvature


def fit_temperature(
    logits: Any,
    labels: Any,
    min_temperature: float = 0.05,
    max_temperature: float = 20.0,
    tolerance: float = 1e-8,
) -> float:
    """Temperature T minimising the dev NLL  (1/N) Σ_i −log softmax(z_i / T)[y_i].

    logits: (N, C); labels: (N,) integer class ids. Solved in β = 1/T, where the NLL is convex, by Newton
    steps kept inside a shrinking bracket (bisection when a step leaves it); deterministic, no random
    start. If the optimum lies outside [min_temperature, max_temperature] the nearer bound is returned
    (e.g. perfectly separable dev data pushes T → 0).
    """
    z = _as_array(logits, np.float64)
    y = _as_array(labels).astype(np.int64, copy=False)
    if z.ndim != 2 or y.shape != (z.shape[0],) or z.shape[0] == 0:
        raise ValueError(f"fit_temperature: logits (N, C) and labels (N,), got {z.shape} and {y.shape}")
    if not 0 < min_temperature < max_temperature:
        raise ValueError("fit_temperature: need 0 < min_temperature < max_temperature")
    low, high = 1.0 / max_temperature, 1.0 / min_temperature
    if _nll_slope_and_curvature(z, y, low)[0] >= 0:
        return max_temperature
    if _nll_slope_and_curvature(z, y, high)[0] <= 0:
        return min_temperature
    beta = 1.0 if low < 1.0 < high else (low + high) / 2
    for _ in range(200):
        slope, curvature = _nll_slope_and_curvature(z, y, beta)
        if slope > 0:
            high = beta
        else:
            low = beta
        newton = beta - slope / curvature if curvature > 0 else -1.0
        next_beta = newton if low < newton < high else (low + high) / 2
        converged = abs(next_beta - beta) <= tolerance * beta
        beta = next_beta
        if converged:
            break
    return float(1.0 / beta)
