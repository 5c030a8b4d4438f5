"""Quality stage for one language (C2): length bounds, then perplexity above the language's quantile.

Length (governance.md §5): fewer than `min_tokens` tokens -> `too_short`; more than `max_chars`
characters -> `too_long`; more tokens than the language's own 99th percentile -> `too_long`. No
relative lower bound: "He left." is a legitimate hypothesis. Web heuristics (Gopher, C4, FineWeb)
would drop almost every few-shot example, so they are not used.

Perplexity: per-character perplexity of the record's fields under a char LM cross-fitted on the
language's own pool (charlm.py), or under a caller-supplied scorer (the base model). Drop above
the language's 95th percentile; thresholds are per language because scales differ several-fold
(XNLI dev medians: en ~5, zh ~60). Pools under `min_pool` records are scored but never dropped.

Base-model hook: ``ppl_scorer(texts: list[str]) -> list[float]`` receives one string per record
(its text fields joined with a newline) and returns one perplexity per string, e.g. exp of the
backbone's mean per-token NLL. It must be deterministic for outputs to be reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyft.governance.charlm import cross_fitted_nll
from hyft.governance.config import QualitySettings
from hyft.governance.languages import DENSE_ALPHABET_LANGS
from hyft.governance.reasons import Flag, Reason
from hyft.governance.text import count_tokens, ppl_text

PplScorer = Callable[[list[str]], list[float]]


def four_significant(value: float) -> float:
    """Round to 4 significant digits before any comparison, so tiny float noise never flips a decision."""
    return float(f"{value:.4g}")


def quantile(values: list[float] | np.ndarray, q: float) -> float:
    """An observed value (numpy method="higher"): no interpolation between records."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), q, method="higher"))


@dataclass
class QualityOutcome:
    """Per record (input order): reason or None, evidence, flags; plus the thresholds applied."""

    reasons: list[Reason | None]
    evidence: list[dict[str, Any]]
    flags: list[set[str]]
    stats: dict[str, Any] = field(default_factory=dict)


def char_ngram_perplexities(records: list[list[str]], lang: str, settings: QualitySettings) -> list[float]:
    """Cross-fitted char-LM perplexity per record (unique field strings are scored once)."""
    normalised = [[ppl_text(t) for t in fields] for fields in records]
    unique = sorted({t for fields in normalised for t in fields})
    order = settings.ppl_order_dense if lang in DENSE_ALPHABET_LANGS else settings.ppl_order
    nll, symbols = cross_fitted_nll(unique, order, settings.ppl_folds)
    position = {t: k for k, t in enumerate(unique)}
    scores = []
    for fields in normalised:
        ks = [position[t] for t in fields]
        scores.append(float(np.exp(nll[ks].sum() / symbols[ks].sum())))
    return scores


def quality_language(
    records: list[list[str]], lang: str, settings: QualitySettings, ppl_scorer: PplScorer | None = None
) -> QualityOutcome:
    """Length then perplexity decisions for the C1 records of one language (sorted by key)."""
    n = len(records)
    reasons: list[Reason | None] = [None] * n
    flags: list[set[str]] = [set() for _ in range(n)]
    tokens = [sum(count_tokens(t) for t in fields) for fields in records]
    chars = [sum(len(t) for t in fields) for fields in records]
    evidence: list[dict[str, Any]] = [{"tokens": tokens[r], "chars": chars[r]} for r in range(n)]
    stats: dict[str, Any] = {"pool": n}

    for r in range(n):
        if tokens[r] < settings.min_tokens:
            reasons[r] = Reason.TOO_SHORT
        elif chars[r] > settings.max_chars:
            reasons[r] = Reason.TOO_LONG
    bounded = [r for r in range(n) if reasons[r] is None]
    if settings.max_tokens_quantile is not None and len(bounded) >= settings.min_pool:
        limit = quantile([tokens[r] for r in bounded], settings.max_tokens_quantile)
        stats["max_tokens"] = limit
        for r in bounded:
            if tokens[r] > limit:
                reasons[r] = Reason.TOO_LONG
    scored = [r for r in range(n) if reasons[r] is None]
    stats.update(length_pool=len(bounded), ppl_pool=len(scored))
    if not settings.ppl or not scored:
        return QualityOutcome(reasons, evidence, flags, stats)

    if settings.ppl_scorer == "base_lm":
        if ppl_scorer is None:
            raise ValueError("quality.ppl_scorer is 'base_lm' but no ppl_scorer callable was given to curate()")
        raw = list(ppl_scorer(["\n".join(records[r]) for r in scored]))
        if len(raw) != len(scored):
            raise ValueError(f"ppl_scorer returned {len(raw)} values for {len(scored)} texts")
    else:
        raw = char_ngram_perplexities([records[r] for r in scored], lang, settings)
    ppl = [four_significant(float(v)) for v in raw]
    for r, value in zip(scored, ppl, strict=True):
        evidence[r]["ppl"] = value
    stats["ppl_quantiles"] = {f"p{int(q * 100)}": quantile(ppl, q) for q in (0.01, 0.05, 0.5, 0.95, 0.99)}
    if len(scored) < settings.min_pool:
        stats["ppl_skipped"] = True
        for r in scored:
            flags[r].add(Flag.PPL_SKIPPED_SMALL_POOL)
        return QualityOutcome(reasons, evidence, flags, stats)
    high = quantile(ppl, settings.ppl_quantile)
    low = quantile(ppl, settings.ppl_low_flag_quantile)
    stats.update(ppl_skipped=False, ppl_max=high, ppl_low_flag=low)
    for r, value in zip(scored, ppl, strict=True):
        if value > high:
            reasons[r] = Reason.PPL_TOO_HIGH
        elif value < low:
            flags[r].add(Flag.PPL_VERY_LOW)
    return QualityOutcome(reasons, evidence, flags, stats)
