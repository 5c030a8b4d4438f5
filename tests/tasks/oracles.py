"""Independent oracles for the evaluation tests: written out from the papers, sharing no code with hyft."""

from __future__ import annotations

import numpy as np
import torch


def textbook_ece(probs: np.ndarray, gold: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE (Guo et al., 2017) with bins ((m−1)/M, m/M], the first also holding c = 0."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    confidence, correct, total = probs.max(1), probs.argmax(1) == gold, 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = (confidence > low) & (confidence <= high) if b else (confidence <= high)
        if members.any():
            total += members.sum() / len(gold) * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def nll_slope_in_temperature(logits, labels, temperature: float) -> float:
    """d/dT of the mean cross-entropy of softmax(logits / T) by autograd: zero at the fitted temperature."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.tensor(float(temperature), dtype=torch.float64, requires_grad=True)
    torch.nn.functional.cross_entropy(logits / t, torch.as_tensor(labels)).backward()
    return float(t.grad)
