"""Edge properties of hyft.evaluation.metrics that the mutation run
(bench/results/mutation.md) found untested."""

from __future__ import annotations

import numpy as np
import pytest

from hyft.evaluation.metrics import direction_gap, expected_calibration_error, gsm8k_exact_match


def _ece_by_definition(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """Guo et al.'s ECE with explicit right-closed bins ((m−1)/M, m/M], the first one also holding 0."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for m in range(1, n_bins + 1):
        lower, upper = (m - 1) / n_bins, m / n_bins
        inside = (confidence > lower) & (confidence <= upper) if m > 1 else confidence <= upper
        if inside.any():
            accuracy = (predicted[inside] == labels[inside]).mean()
            total += inside.mean() * abs(accuracy - confidence[inside].mean())
    return total


@pytest.mark.parametrize("n_bins", [1, 2, 15])
def test_ece_equals_the_per_bin_definition_including_the_lowest_bin(n_bins):
    # 40 classes: top-label confidences reach down to ~0.03, so the lowest of 15 bins is populated too.
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 40)) * rng.uniform(0.1, 4, size=(400, 1))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 40, size=400)
    assert (probs.max(axis=1) <= 1 / 15).any()
    expected = _ece_by_definition(probs, labels, n_bins)
    assert expected_calibration_error(probs, labels, n_bins=n_bins) == pytest.approx(expected, abs=1e-12)


def test_ece_with_one_bin_is_the_gap_between_accuracy_and_mean_confidence():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1])
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(
        abs(2 / 3 - (0.9 + 0.6 + 0.7) / 3)
    )


def test_ece_keeps_the_lowest_bin_apart_when_its_gap_has_the_other_sign():
    # bin 1 of 2 (c ≤ 0.5): under-confident and right (+0.6); bin 2: over-confident and wrong (−0.9)
    probs = np.array([[0.4, 0.3, 0.3], [0.9, 0.05, 0.05]])
    labels = np.array([0, 1])
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx((0.6 + 0.9) / 2)


def test_gsm8k_exact_match_refuses_bare_strings_and_empty_corpora():
    with pytest.raises(ValueError, match="lists of sentences"):
        gsm8k_exact_match("72", "72")  # iterating characters would score 1.0
    with pytest.raises(ValueError, match="no sentences"):
        gsm8k_exact_match([], [])


def test_direction_gap_keys_must_be_src_tgt_and_a_self_direction_is_no_pair():
    with pytest.raises(ValueError, match="not of the form"):
        direction_gap({"en_zh": 10.0, "zh-en": 20.0})
    # "en-en" is its own reverse: it is not a language pair and must not dilute the mean gap.
    assert direction_gap({"en-zh": 10.0, "zh-en": 20.0, "en-en": 50.0}) == pytest.approx(10.0)
