"""Metric functions against hand-computed values, brute force and torchmetrics."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch

from hyft.metrics import (
    accuracy,
    apply_temperature,
    average_ece,
    direction_gap,
    expected_calibration_error,
    fit_temperature,
    gsm8k_exact_match,
    gsm8k_extract_answer,
    macro_average,
    paired_bootstrap_ci,
    parity_gap,
    pass_at_k,
)


def test_accuracy_macro_and_parity_gap_by_hand() -> None:
    assert accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    assert accuracy(["entailment", "neutral"], ["entailment", "neutral"]) == 1.0
    scores = {"en": 0.80, "hi": 0.62, "sw": 0.55, "zh": 0.71}
    assert macro_average(scores) == pytest.approx((0.80 + 0.62 + 0.55 + 0.71) / 4)
    assert parity_gap(scores) == pytest.approx(0.80 - 0.55)
    assert parity_gap({"en": 0.7}) == 0.0
    assert average_ece({"en": 0.05, "hi": 0.15}) == pytest.approx(0.10)
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError):
        macro_average({})


def test_ece_on_a_constructed_case() -> None:
    # confidences 0.95 ✓, 0.92 ✗ | 0.62 ✓, 0.67 ✓ | 0.55 ✗ in 10 bins:
    # 2/5·|0.5 − 0.935| + 2/5·|1 − 0.645| + 1/5·|0 − 0.55| = 0.174 + 0.142 + 0.110 = 0.426
    probs = [[0.95, 0.05], [0.08, 0.92], [0.62, 0.38], [0.33, 0.67], [0.55, 0.45]]
    labels = [0, 0, 0, 1, 1]
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.426, abs=1e-12)
    # 3 of 4 right at confidence 0.75: perfectly calibrated
    calibrated = [[0.75, 0.25]] * 4
    assert expected_calibration_error(calibrated, [0, 0, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_ece_puts_confidence_one_in_the_last_bin() -> None:
    # (0.5, 1] holds both: |0.5 − 0.85| = 0.35 (torchmetrics would give 1.0 a bucket of its own: 0.65)
    value = expected_calibration_error([[1.0, 0.0], [0.7, 0.3]], [1, 0], n_bins=2)
    assert value == pytest.approx(0.35, abs=1e-12)


def test_ece_bins_are_right_closed_so_a_confidence_on_an_edge_lands_in_the_lower_bin() -> None:
    # M = 4 bins ((m−1)/4, m/4]; confidences 0.5 ✓ (argmax takes the first index on the tie), 0.6 ✗,
    # 0.75 ✓, 0.8 ✗. Right-closed: {0.5} in (0.25, 0.5], {0.6, 0.75} in (0.5, 0.75], {0.8} in (0.75, 1]:
    # ECE = (|1 − 0.5| + |1 − 1.35| + |0 − 0.8|) / 4. Left-closed [lower, upper) bins would give
    # {0.5, 0.6} and {0.75, 0.8}: (0.1 + 0.55) / 4.
    probs = [[0.5, 0.5], [0.6, 0.4], [0.75, 0.25], [0.8, 0.2]]
    labels = [0, 1, 0, 1]
    assert expected_calibration_error(probs, labels, n_bins=4) == pytest.approx((0.5 + 0.35 + 0.8) / 4)
    # With five classes c = 0.25 (right) is on the edge of (0, 0.25] and shares it with c = 0.2 (wrong):
    # |1 − 0.45| / 2 right-closed; left-closed would give c = 0.25 a bin of its own: (0.75 + 0.2) / 2.
    five = [[0.25, 0.25, 0.25, 0.15, 0.1], [0.2] * 5]
    assert expected_calibration_error(five, [0, 1], n_bins=4) == pytest.approx(abs(1 - 0.45) / 2)


def test_ece_equals_torchmetrics() -> None:
    from torchmetrics.classification import MulticlassCalibrationError

    generator = torch.Generator().manual_seed(0)
    for n_classes, scale in [(3, 1.0), (3, 4.0), (10, 2.5)]:
        logits = scale * torch.randn(3000, n_classes, generator=generator)
        probs = torch.softmax(logits, dim=1)
        labels = torch.randint(0, n_classes, (3000,), generator=generator)
        # make the model better than chance so bins hold a mix of right and wrong predictions
        labels = torch.where(torch.rand(3000, generator=generator) < 0.5, probs.argmax(1), labels)
        reference = MulticlassCalibrationError(num_classes=n_classes, n_bins=15, norm="l1")(probs, labels)
        ours = expected_calibration_error(probs, labels)
        assert ours == pytest.approx(float(reference), abs=2e-6)
        assert ours > 0.01
    half = probs[:200].to(torch.bfloat16)  # low-precision tensors are widened, not rejected
    assert expected_calibration_error(half, labels[:200]) == pytest.approx(
        expected_calibration_error(half.float().numpy(), labels[:200].numpy()), abs=1e-12
    )


def test_direction_gap() -> None:
    bleu_by_direction = {"en-zh": 30.0, "zh-en": 24.0, "en-hi": 20.0, "hi-en": 26.0, "en-sw": 11.0}
    # |30 − 24| and |20 − 26|; en-sw has no reverse and is ignored
    assert direction_gap(bleu_by_direction) == pytest.approx(6.0)
    assert direction_gap({"en-zh_Hant": 10.0, "zh_Hant-en": 13.5}) == pytest.approx(3.5)
    with pytest.raises(ValueError):
        direction_gap({"en-zh": 30.0})


def _pass_at_k_by_enumeration(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


def test_pass_at_k_matches_brute_force() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_by_enumeration(n, c, k), abs=1e-12)
    # large n: exact rational value, where forming comb() as floats would overflow
    exact = 1 - Fraction(comb(1990, 500), comb(2000, 500))
    assert pass_at_k(2000, 10, 500) == pytest.approx(float(exact), abs=1e-12)
    assert pass_at_k(200, 0, 10) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\nShe makes 9 * 2 = $18.\n#### 18", "18"),
        ("#### 1,000", "1000"),
        ("So she pays $4.50 a day. The answer is $13.00.", "13"),
        ("The answer is: 42 apples, not 43", "42"),
        ("It drops to -3 degrees", "-3"),
        ("half of it: 0.50", "0.5"),
        ("Total 3,456,789 and then 12.", "12"),
        ("I do not know.", None),
        ("", None),
    ],
)
def test_gsm8k_extraction_cases(text: str, expected: str | None) -> None:
    assert gsm8k_extract_answer(text) == expected


def test_gsm8k_exact_match(shared_data) -> None:
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()]
    answers = [row["answer"] for row in rows]
    finals = [answer.split("####")[-1].strip().replace(",", "") for answer in answers]
    assert [gsm8k_extract_answer(answer) for answer in answers] == finals
    assert any("," in answer.split("####")[-1] for answer in answers)  # the comma path is exercised
    predictions = ["so the total is 18", "The answer is 7", "no idea"]
    assert gsm8k_exact_match(predictions, ["… #### 18", "#### 8", "#### 3"]) == pytest.approx(1 / 3)
    assert gsm8k_exact_match(answers[:50], finals[:50]) == 1.0


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, size=(6000, 4))
    probs = apply_temperature(true_logits, 1.0)
    labels = (rng.random(6000)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)  # y ~ softmax(true_logits)
    overconfident = 3.0 * true_logits  # calibrated at T = 3
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.08)
    before = expected_calibration_error(apply_temperature(overconfident, 1.0), labels)
    after = expected_calibration_error(apply_temperature(overconfident, temperature), labels)
    assert before > 0.1 and after < 0.03
    scaled = apply_temperature(overconfident, temperature)
    assert np.allclose(scaled.sum(axis=1), 1.0)
    assert (scaled.argmax(1) == overconfident.argmax(1)).all()
    underconfident = torch.tensor(0.5 * true_logits)  # tensors are accepted too
    assert fit_temperature(underconfident, torch.tensor(labels)) == pytest.approx(0.5, rel=0.08)


@pytest.mark.parametrize("true_temperature", [3.0, 0.5, 1.7])
def test_fitted_temperature_is_the_true_one_when_labels_follow_its_softmax_exactly(true_temperature):
    # Each row's labels occur in exactly the proportions softmax(z / T*) gives them (q rows repeated with
    # label counts 20·q), so the dev NLL's slope in β = 1/T is zero at T*: the fit must return T*
    # (sampling noise, which a random-label test has to allow for, is absent).
    q = np.array([[0.5, 0.3, 0.2], [0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.05, 0.9, 0.05], [0.4, 0.35, 0.25]])
    counts = np.rint(20 * q).astype(int)
    assert (counts == 20 * q).all()
    rows = [(i, label) for i in range(len(q)) for label in range(3) for _ in range(counts[i, label])]
    logits = np.array([true_temperature * np.log(q[i]) for i, _ in rows])
    labels = np.array([label for _, label in rows])
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.01)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=1e-6)


def test_paired_bootstrap_ci_covers_the_true_difference() -> None:
    rng = np.random.default_rng(1)
    n, trials, covered = 300, 200, 0
    for trial in range(trials):
        u = rng.random(n)
        v = np.where(rng.random(n) < 0.5, u, rng.random(n))  # B shares half its draws with A
        a, b = (u < 0.70).astype(float), (v < 0.60).astype(float)  # E[a − b] = 0.10 exactly
        mean, low, high = paired_bootstrap_ci(a, b, n_resamples=300, seed=trial)
        assert low <= mean <= high
        covered += low <= 0.10 <= high
    assert covered / trials >= 0.90


def test_paired_bootstrap_ci_basics() -> None:
    a = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=float)
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0, 0.0)
    b = np.roll(a, 1)
    first = paired_bootstrap_ci(a, b, seed=5)
    assert first == paired_bootstrap_ci(a, b, seed=5)
    assert first[0] == pytest.approx((a - b).mean())
    wide = paired_bootstrap_ci(a, b, confidence=0.99, seed=5)
    assert wide[1] <= first[1] and wide[2] >= first[2]


# --------------------------------------------------------------------------- hierarchical (seeds × examples)


def test_hierarchical_bootstrap_two_seeds_one_example_by_hand() -> None:
    from hyft.evaluation.metrics import hierarchical_bootstrap_ci

    # one example, seed 0 gives d = 0 and seed 1 gives d = 1: a resample of two seeds has mean 0 (p = ¼),
    # ½ (p = ½) or 1 (p = ¼), so with many resamples the 95% percentile interval is [0, 1] around 0.5.
    # An example-only bootstrap of the seed-averaged scores would give [0.5, 0.5]: seed variance is in.
    assert hierarchical_bootstrap_ci([[1.0], [1.0]], [[1.0], [0.0]], n_resamples=4000, seed=3) == (
        0.5,
        0.0,
        1.0,
    )
    # a 0.99 interval of a 3-seed resample (means 0, ⅓, ⅔, 1) still spans [0, 1]
    mean, low, high = hierarchical_bootstrap_ci(
        [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], n_resamples=4000, confidence=0.99
    )
    assert (mean, low, high) == (pytest.approx(2 / 3), 0.0, 1.0)


def test_hierarchical_bootstrap_matches_a_loop_reimplementation_of_its_documented_draws() -> None:
    from hyft.evaluation.metrics import hierarchical_bootstrap_ci

    rng = np.random.default_rng(11)
    a, b = (rng.random((3, 7)) < 0.7).astype(float), (rng.random((3, 7)) < 0.5).astype(float)
    n_resamples, seed = 500, 9
    examples = np.random.default_rng(seed).integers(0, 7, size=(n_resamples, 7))
    seeds = np.random.default_rng([seed, 1]).integers(0, 3, size=(n_resamples, 3))
    replicates = []
    for draw in range(n_resamples):
        total = 0.0
        for s in seeds[draw]:  # drawn seeds, each scored on the same drawn examples
            total += sum(a[s, i] - b[s, i] for i in examples[draw]) / 7
        replicates.append(total / 3)
    want_low, want_high = np.quantile(replicates, [0.025, 0.975])
    mean, low, high = hierarchical_bootstrap_ci(a, b, n_resamples=n_resamples, seed=seed)
    assert mean == pytest.approx(float((a - b).mean()))
    assert (low, high) == (pytest.approx(want_low, abs=1e-12), pytest.approx(want_high, abs=1e-12))


def test_hierarchical_bootstrap_degenerate_cases() -> None:
    from hyft.evaluation.metrics import hierarchical_bootstrap_ci

    rng = np.random.default_rng(2)
    a, b = (rng.random(200) < 0.7).astype(float), (rng.random(200) < 0.6).astype(float)
    # identical seeds: nothing to gain from resampling seeds, so the interval is the example bootstrap's
    example_only = paired_bootstrap_ci(a, b, n_resamples=700, seed=4)
    assert example_only[1] < example_only[2]
    seeded = hierarchical_bootstrap_ci(np.tile(a, (4, 1)), np.tile(b, (4, 1)), n_resamples=700, seed=4)
    np.testing.assert_allclose(seeded, example_only, atol=1e-12)
    # a difference of 0.25 on every seed and example: zero width at 0.25
    scores = rng.random((3, 50))
    mean, low, high = hierarchical_bootstrap_ci(scores + 0.25, scores, n_resamples=300)
    assert mean == pytest.approx(0.25) and low == pytest.approx(0.25) and high == pytest.approx(0.25)
    with pytest.raises(ValueError):
        hierarchical_bootstrap_ci(a, b)  # one vector, not [seeds, examples]
    with pytest.raises(ValueError):
        hierarchical_bootstrap_ci(np.ones((2, 5)), np.ones((3, 5)))


def test_hierarchical_bootstrap_widens_when_seeds_disagree() -> None:
    from hyft.evaluation.metrics import hierarchical_bootstrap_ci

    rng = np.random.default_rng(5)
    a, b = (rng.random(400) < 0.7).astype(float), (rng.random(400) < 0.6).astype(float)
    same = hierarchical_bootstrap_ci(np.tile(a, (4, 1)), np.tile(b, (4, 1)), seed=1)
    shifts = np.array([[-0.15], [-0.05], [0.05], [0.15]])  # seeds move A's score apart; mean shift 0
    apart = hierarchical_bootstrap_ci(np.tile(a, (4, 1)) + shifts, np.tile(b, (4, 1)), seed=1)
    assert apart[0] == pytest.approx(same[0])
    width_same, width_apart = same[2] - same[1], apart[2] - apart[1]
    # the seed part alone: a mean of 4 draws from the shifts has sd = sd(shifts, ddof=0) / 2 ≈ 0.056,
    # so the interval grows by far more than the example part's ≈ 0.13 width would allow by chance
    assert width_apart > width_same + 0.05
    assert apart[1] < same[1] and apart[2] > same[2]
