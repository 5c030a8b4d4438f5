"""Evaluation metrics as pure functions: accuracy, cross-language aggregates, calibration, BLEU/chrF,
GSM8K exact match and pass@k.

Every function takes plain Python sequences or arrays (numpy, or CPU torch tensors through
``np.asarray``) and returns a Python float. Temperature scaling lives in ``calibration.py`` and the
paired bootstraps (over examples; over seeds × examples) in ``bootstrap.py``; they are re-exported here
so ``hyft.evaluation.metrics`` is the one import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from hyft.evaluation.bootstrap import hierarchical_bootstrap_ci, paired_bootstrap_ci
from hyft.evaluation.calibration import _as_array, apply_temperature, fit_temperature

__all__ = [
    "accuracy",
    "apply_temperature",
    "average_ece",
    "bleu",
    "bleu_signature",
    "bleu_tokenizer",
    "chrf",
    "direction_gap",
    "en_x_spread",
    "expected_calibration_error",
    "fit_temperature",
    "gsm8k_exact_match",
    "gsm8k_extract_answer",
    "hierarchical_bootstrap_ci",
    "macro_average",
    "paired_bootstrap_ci",
    "parity_gap",
    "pass_at_k",
]


def _check_scores(score_by_key: Mapping[str, float], what: str) -> np.ndarray:
    if not score_by_key:
        raise ValueError(f"{what}: expected at least one entry, got an empty mapping")
    values = np.asarray([float(v) for v in score_by_key.values()], dtype=np.float64)
    if np.isnan(values).any():
        missing = [k for k, v in score_by_key.items() if math.isnan(float(v))]
        raise ValueError(f"{what}: NaN score for {missing}")
    return values


# --------------------------------------------------------------------------- classification


def accuracy(predictions: Sequence[Any], labels: Sequence[Any]) -> float:
    """Share of exact matches: acc = (1/N) Σ_i [prediction_i == label_i].

    predictions, labels: sequences of equal length N ≥ 1 (class ids or strings).
    """
    if len(predictions) != len(labels):
        raise ValueError(f"accuracy: {len(predictions)} predictions but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("accuracy: no examples")
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def macro_average(score_by_language: Mapping[str, float]) -> float:
    """Unweighted mean over languages: (1/L) Σ_ℓ score_ℓ (every language counts once, whatever its size)."""
    return float(_check_scores(score_by_language, "macro_average").mean())


def parity_gap(score_by_language: Mapping[str, float]) -> float:
    """Parity gap Δ = max_ℓ score_ℓ − min_ℓ score_ℓ (0 for a single language)."""
    values = _check_scores(score_by_language, "parity_gap")
    return float(values.max() - values.min())


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width bins, L1 norm (Guo et al., 2017).

    probs: (N, C) class probabilities (rows sum to 1); labels: (N,) integer class ids.
    With confidence c_i = max_k probs[i, k] and ŷ_i = argmax_k probs[i, k] (first index on ties),
    bins B_m = ((m−1)/M, m/M] for m = 1..M (M = n_bins; the first bin also holds c = 0):

        ECE = Σ_m (|B_m| / N) · | acc(B_m) − conf(B_m) |,
        acc(B_m) = mean_{i∈B_m} [ŷ_i = y_i],  conf(B_m) = mean_{i∈B_m} c_i.

    Computed in float64. Equals torchmetrics' ``MulticlassCalibrationError(norm="l1")`` except for
    confidences that fall exactly on a bin edge: torchmetrics uses [lower, upper) bins in float32 and
    puts c = 1.0 into a bucket of its own, here c = 1.0 is in the last bin as in the paper.
    """
    p = _as_array(probs, np.float64)
    y = _as_array(labels).astype(np.int64, copy=False)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0] or p.shape[0] == 0:
        raise ValueError(
            f"expected_calibration_error: probs (N, C) and labels (N,), got {p.shape}, {y.shape}"
        )
    if n_bins < 1:
        raise ValueError(f"expected_calibration_error: n_bins must be ≥ 1, got {n_bins}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # Right-closed bins: the smallest m with c ≤ m/M; ceil(c·M) − 1, clipped so c = 0 lands in bin 0.
    bin_index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bin_index, minlength=n_bins)
    gap_sum = np.abs(
        np.bincount(bin_index, weights=correct, minlength=n_bins)
        - np.bincount(bin_index, weights=confidence, minlength=n_bins)
    )
    # Σ_m (|B_m|/N)·|acc − conf| = (1/N) Σ_m |Σ_{i∈B_m} (correct_i − c_i)|
    return float(gap_sum[count > 0].sum() / len(y))


def average_ece(ece_by_language: Mapping[str, float]) -> float:
    """Macro-averaged ECE over languages: (1/L) Σ_ℓ ECE_ℓ."""
    return float(_check_scores(ece_by_language, "average_ece").mean())


# --------------------------------------------------------------------------- translation

# Scripts written without spaces between words: word-level 13a would score whole sentences.
_CHARACTER_TOKENIZED = {"ja", "th", "lo", "km", "my"}


def _base_language(lang: str) -> str:
    return re.split(r"[_-]", lang.strip())[0].lower()


def bleu_tokenizer(target_lang: str) -> str:
    """sacrebleu tokenizer used for a target language (fixed, so scores never depend on what is installed).

    zh, zh_Hant, yue → "zh"; ja, th, lo, km, my (no spaces between words) → "char"; everything else,
    including ko (spaced), → "13a". "ja-mecab"/"ko-mecab" are not chosen automatically even when MeCab is
    installed; pass ``tokenize=`` to :func:`bleu` to use them.
    """
    base = _base_language(target_lang)
    if base in {"zh", "yue"}:
        return "zh"
    if base in _CHARACTER_TOKENIZED:
        return "char"
    return "13a"


def _check_corpus(hypotheses: Sequence[str], references: Sequence[str], what: str) -> None:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError(f"{what}: pass lists of sentences, not a single string")
    if len(hypotheses) != len(references):
        raise ValueError(f"{what}: {len(hypotheses)} hypotheses but {len(references)} references")
    if len(hypotheses) == 0:
        raise ValueError(f"{what}: no sentences")


def bleu(
    hypotheses: Sequence[str], references: Sequence[str], target_lang: str, tokenize: str | None = None
) -> float:
    """Corpus BLEU (0–100) of detokenised text with one reference per sentence, via sacrebleu.

    BLEU = BP · exp(Σ_{n=1..4} ¼ log p_n), BP = min(1, exp(1 − r/c)), with sacrebleu's defaults
    (exp smoothing, no lowercasing); tokenizer from :func:`bleu_tokenizer` unless ``tokenize`` is given.
    Identical to ``sacrebleu REF -i HYP -m bleu -tok <tokenizer>`` on the same lines.
    """
    from sacrebleu.metrics import BLEU

    _check_corpus(hypotheses, references, "bleu")
    metric = BLEU(tokenize=tokenize or bleu_tokenizer(target_lang))
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score)


def bleu_signature(target_lang: str, tokenize: str | None = None) -> str:
    """sacrebleu signature string (e.g. ``nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:2.6.0``)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize or bleu_tokenizer(target_lang))
    metric.corpus_score(["x"], [["x"]])  # the signature needs the reference count
    return str(metric.get_signature())


def chrf(hypotheses: Sequence[str], references: Sequence[str], word_order: int = 0) -> float:
    """Corpus chrF (0–100) via sacrebleu: character n-grams up to 6, β = 2 (word_order=2 gives chrF++).

    chrF_β = (1 + β²) · chrP · chrR / (β² · chrP + chrR), precision/recall averaged over n-gram orders.
    """
    from sacrebleu.metrics import CHRF

    _check_corpus(hypotheses, references, "chrf")
    metric = CHRF(word_order=word_order)
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score)


def direction_gap(bleu_by_direction: Mapping[str, float]) -> float:
    """Mean absolute gap between the two directions of each language pair.

    Keys are "src-tgt" (e.g. "en-zh", "zh_Hant-en"). For every unordered pair {a, b} with both a→b and
    b→a present: gap_ab = |BLEU(a→b) − BLEU(b→a)|; result = mean over those pairs. For one pair this is
    max − min, the parity gap of the two directions. Directions without their reverse are ignored; if no
    pair is complete a ValueError names the keys.
    """
    _check_scores(bleu_by_direction, "direction_gap")
    by_pair: dict[tuple[str, str], float] = {}
    for key, value in bleu_by_direction.items():
        parts = key.split("-")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"direction_gap: key {key!r} is not of the form 'src-tgt'")
        by_pair[(parts[0], parts[1])] = float(value)
    gaps = [abs(v - by_pair[(t, s)]) for (s, t), v in by_pair.items() if s < t and (t, s) in by_pair]
    if not gaps:
        raise ValueError(f"direction_gap: no direction has its reverse among {sorted(bleu_by_direction)}")
    return float(np.mean(gaps))


def en_x_spread(score_by_direction: Mapping[str, float], source_language: str = "en") -> float:
    """FLORES Δ as the paper reports it: the spread of a score over the run's EN→X directions.

    Keys are "src-tgt". Over the keys whose source is ``source_language`` (``en-zh``, ``en-es``, …):
    Δ = max_X score(en→X) − min_X score(en→X). Other directions (X→EN, X→Y) are ignored; the gap
    between the two directions of one pair is :func:`direction_gap`. Fewer than two EN→X directions is
    a ValueError naming the keys (a spread needs two). Example: {en-zh: 10, en-es: 30, zh-en: 25} → 20.
    """
    _check_scores(score_by_direction, "en_x_spread")
    prefix = f"{source_language}-"
    values = [float(v) for key, v in score_by_direction.items() if key.startswith(prefix)]
    if len(values) < 2:
        raise ValueError(
            f"en_x_spread: need two or more {source_language}→X directions, got {sorted(score_by_direction)}"
        )
    return max(values) - min(values)


# --------------------------------------------------------------------------- GSM8K

_NUMBER = re.compile(r"-?\$?-?\d[\d,]*(?:\.\d+)?")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)", re.IGNORECASE)


def _canonical_number(raw: str) -> str | None:
    text = raw.replace(",", "").replace("$", "")
    negative = text.count("-") % 2 == 1
    try:
        value = Decimal(text.replace("-", ""))
    except InvalidOperation:
        return None
    if negative:
        value = -value
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def gsm8k_extract_answer(text: str) -> str | None:
    """Final numeric answer of a GSM8K solution or model output, in canonical form (or None).

    Order: the first number after the last "####" (the reference format); else the first number after
    the last "answer is"/"answer:"; else the last number in the text. Canonical form: "$" and thousands
    commas removed, integral values without decimals ("18.00" → "18"), other decimals without trailing
    zeros ("0.50" → "0.5").
    """
    if not text:
        return None
    for marker in ("####", _ANSWER_IS):
        if isinstance(marker, str):
            position = text.rfind(marker)
            tail = text[position + len(marker) :] if position >= 0 else None
        else:
            matches = list(marker.finditer(text))
            tail = text[matches[-1].end() :] if matches else None
        if tail is not None:
            found = _NUMBER.search(tail)
            if found:
                return _canonical_number(found.group())
    numbers = _NUMBER.findall(text)
    return _canonical_number(numbers[-1]) if numbers else None


def gsm8k_exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """EM = (1/N) Σ_i [extract(prediction_i) == extract(reference_i)]; a prediction without a number is wrong.

    references: full GSM8K answers ("… #### 72") or bare numbers; one without a number is a ValueError.
    """
    _check_corpus(predictions, references, "gsm8k_exact_match")
    hits = 0
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        gold = gsm8k_extract_answer(reference)
        if gold is None:
            raise ValueError(f"gsm8k_exact_match: reference {index} has no number: {reference[-80:]!r}")
        hits += gsm8k_extract_answer(prediction) == gold
    return hits / len(references)


# --------------------------------------------------------------------------- code


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al., 2021, "Evaluating LLMs Trained on Code").

    pass@k = 1 − C(n−c, k) / C(n, k), evaluated as 1 − Π_{i=n−c+1..n} (1 − k/i) so that no binomial
    coefficient is formed (stable for large n); exactly 1.0 when n − c < k.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k: need 0 ≤ c ≤ n and 1 ≤ k ≤ n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))
