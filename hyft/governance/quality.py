"""Quality stage for one language (C2): length bounds, repetition,
then perplexity far above the language's typical value.

Length (governance.md §5): fewer than `min_tokens` tokens -> `too_short`; more than `max_chars`
characters -> `too_long`; more tokens than the language's own 99th percentile -> `too_long`. No
relative lower bound: "He left." is a legitimate hypothesis. Web heuristics (Gopher, C4, FineWeb)
would drop almost every few-shot example, so they are not used.

Perplexity: per-character perplexity of the record's fields under a char LM cross-fitted on the
language's own pool (charlm.py), or under a caller-supplied scorer (the base model). Drop above
robust z-score k (default: more than 6 robust standard deviations of log-perplexity above the shorth
location, 4 for Han/Kana, model refit on the inliers; docs/governance-thresholds.md measures it at 0-30 %
planted garbage), or when the record's character order earns less than a third of the language's typical
*order gain* (shuffled text earns 0, whatever share of the pool is shuffled); or, with
``ppl_threshold="quantile"``, above a per-language quantile (drops a fixed share).
Thresholds are per language because scales differ several-fold (XNLI dev medians: en ~5, zh ~60).
Pools under `min_pool` records are scored but never dropped.

Base-model hook: ``ppl_scorer(texts: list[str]) -> list[float]`` receives one string per record
(its text fields joined with a newline) and returns one perplexity per string, e.g. exp of the
backbone's mean per-token NLL. It must be deterministic for outputs to be reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyft.governance.charlm import cross_fitted_nll
from hyft.governance.config import QualitySettings
from hyft.governance.languages import DENSE_ALPHABET_LANGS
from hyft.governance.reasons import Flag, Reason
from hyft.governance.text import count_tokens, ppl_text, tokens

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


def char_ngram_perplexities(
    records: list[list[str]],
    lang: str,
    settings: QualitySettings,
    train: list[bool] | None = None,
    order: int | None = None,
) -> list[float]:
    """Cross-fitted char-LM perplexity per record (unique field strings are scored once).

    ``train`` (one per record) limits the records the models are fit on; all are scored.
    """
    normalised = [[ppl_text(t) for t in fields] for fields in records]
    unique = sorted({t for fields in normalised for t in fields})
    if order is None:
        order = settings.ppl_order_dense if lang in DENSE_ALPHABET_LANGS else settings.ppl_order
    position = {t: k for k, t in enumerate(unique)}
    fit = None
    if train is not None:
        fit = np.zeros(len(unique), dtype=bool)
        for fields, keep in zip(normalised, train, strict=True):
            if keep:
                fit[[position[t] for t in fields]] = True
    nll, symbols = cross_fitted_nll(unique, order, settings.ppl_folds, fit)
    scores = []
    for fields in normalised:
        ks = [position[t] for t in fields]
        scores.append(float(np.exp(nll[ks].sum() / symbols[ks].sum())))
    return scores


def shorth(values: np.ndarray) -> tuple[float, float]:
    """Location and scale from the shortest interval holding half the values (Rousseeuw's LMS/shorth).

    Location: the interval's midpoint; scale: its length / 1.349 (a normal's shortest half is 1.349 σ
    long). Breaks down only at 50 % contamination, and unlike median/MAD it is not dragged towards a
    heavy noise mode lying on one side: the clean mass is where values are densest.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    h = n // 2 + 1
    widths = ordered[h - 1 :] - ordered[: n - h + 1]
    i = int(np.argmin(widths))
    return float((ordered[i] + ordered[i + h - 1]) / 2), float(max(widths[i], 1e-9) / 1.349)


# The model is refit on the records within this many robust sd: the noise no longer shapes the model.
REFIT_Z = 3.0
REFIT_Z_DENSE = 2.0


def robust_scores(
    records: list[list[str]], lang: str, settings: QualitySettings
) -> tuple[list[float], list[float], list[float | None], dict[str, Any]]:
    """(perplexity, z-score, order gain or None, threshold description) per record for
    ``ppl_threshold="robust"``.

    z = (log ppl − location) / scale with shorth location and scale. The char LM is first fit on the
    whole pool, then refit ``ppl_refits`` times on the records with z ≤ 2 (so planted garbage stops
    training the model that judges it). For Han/Kana languages, whose large alphabet makes the log-ppl
    spread wide, z is the larger of the log-ppl z and the z of the *context gain* (log ppl under the
    n-gram model minus under a unigram model): shuffled characters keep the unigram distribution and lose
    only the context, which the gain isolates. On short Han rows that gain still overlaps clean text once
    shuffled rows are many (16 % caught at 30 %), so every record also gets its *order gain*
    (:func:`order_gains`), judged against the language's typical gain (``ppl_order_gain``). It catches
    shuffled and random text in any script whatever their share, which lets the z threshold sit high
    enough (k = 6) to keep code-switched rows (Swahili with English names: z 5-8).
    """
    dense = lang in DENSE_ALPHABET_LANGS
    k = settings.ppl_k_dense if dense else settings.ppl_k
    refit_z = REFIT_Z_DENSE if dense else REFIT_Z
    train: list[bool] | None = None
    for _ in range(settings.ppl_refits + 1):
        ppl = np.array([four_significant(v) for v in char_ngram_perplexities(records, lang, settings, train)])
        log_ppl = np.log(ppl)
        location, scale = shorth(log_ppl)
        z = (log_ppl - location) / scale
        parts: dict[str, Any] = {
            "location_ppl": four_significant(float(np.exp(location))),
            "scale_log_ppl": four_significant(scale),
        }
        if dense:
            unigram = np.log(char_ngram_perplexities(records, lang, settings, train, order=1))
            gain = log_ppl - unigram
            gain_location, gain_scale = shorth(gain)
            z = np.maximum(z, (gain - gain_location) / gain_scale)
            parts.update(
                gain_location=four_significant(gain_location), gain_scale=four_significant(gain_scale)
            )
        z = np.array([four_significant(float(v)) for v in z])
        train = [bool(v <= refit_z) for v in z]
    description = {
        "method": "robust",
        "k": k,
        "refit_z": refit_z,
        "refits": settings.ppl_refits,
        "fit_on": int(sum(train or [])),
        **parts,
        "max_ppl": four_significant(float(np.exp(location + k * scale))),
    }
    if dense:
        description["rule"] = "max(z of log ppl, z of context gain) > k"
    else:
        description["rule"] = "log ppl > location + k * scale"
    gains: list[float | None] = [None] * len(records)
    if settings.ppl_order_gain is not None:
        measured = order_gains(records, lang, settings, train)
        typical, _ = shorth(measured)
        gains = [four_significant(float(v)) for v in measured]
        description["order_gain"] = {
            "typical": four_significant(typical),
            "share": four_significant(settings.ppl_order_gain),
            "min_gain": four_significant(settings.ppl_order_gain * typical),
            "shuffles": settings.ppl_order_shuffles,
            "rule": "order gain < share * typical (shorth location) -> no_word_order",
        }
    return [float(v) for v in ppl], [float(v) for v in z], gains, description


def order_gains(
    records: list[list[str]], lang: str, settings: QualitySettings, train: list[bool] | None = None
) -> np.ndarray:
    """(n,) the *order gain* of each record: mean over ``ppl_order_shuffles`` shuffles of log ppl(its
    fields with their characters shuffled) − log ppl(as written), under the cross-fitted char LM fit on
    ``train``. Nats per character that its order earns over random orders of its own characters: ~0 for
    shuffled text whatever the pool holds, positive for text. Shuffles are seeded by the record's text
    (deterministic, independent of pool order) and scored in the fold of their field, by the model that
    scores the field itself (never one that saw it).
    """
    normalised = [[ppl_text(t) for t in fields] for fields in records]
    unique = sorted({t for fields in normalised for t in fields})
    variants: dict[tuple[str, int], str] = {}
    for text in unique:
        seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
        rng = np.random.default_rng(seed)
        for copy in range(settings.ppl_order_shuffles):
            variants[text, copy] = "".join(rng.permutation(list(text))) if text else text
    texts = unique + list(variants.values())
    keys = unique + [text for text, _ in variants]
    position = {t: k for k, t in enumerate(unique)}
    fit = np.zeros(len(texts), dtype=bool)
    for fields, keep in zip(normalised, train or [True] * len(records), strict=True):
        if keep:
            fit[[position[t] for t in fields]] = True
    order = settings.ppl_order_dense if lang in DENSE_ALPHABET_LANGS else settings.ppl_order
    nll, symbols = cross_fitted_nll(texts, order, settings.ppl_folds, fit, fold_keys=keys)
    shuffled_at = {key: len(unique) + k for k, key in enumerate(variants)}
    gains = np.zeros(len(records))
    for r, fields in enumerate(normalised):
        ks = [position[t] for t in fields]
        written = nll[ks].sum() / symbols[ks].sum()
        shuffled = [
            sum(nll[shuffled_at[t, copy]] for t in fields) / symbols[ks].sum()
            for copy in range(settings.ppl_order_shuffles)
        ]
        gains[r] = float(np.mean(shuffled)) - written
    return gains


def is_repetitive(fields: list[str], settings: QualitySettings) -> bool:
    """A field of >= ``repetition_min_units`` tokens of which at most ``repetition`` are distinct."""
    if settings.repetition is None:
        return False
    for text in fields:
        units = [t.casefold() for t in tokens(text)]
        if len(units) >= settings.repetition_min_units and len(set(units)) <= settings.repetition * len(
            units
        ):
            return True
    return False


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
    for r in range(n):
        if reasons[r] is None and is_repetitive(records[r], settings):
            reasons[r] = Reason.REPETITIVE
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
            raise ValueError(
                "quality.ppl_scorer is 'base_lm' but no ppl_scorer callable was given to curate()"
            )
        raw = list(ppl_scorer(["\n".join(records[r]) for r in scored]))
        if len(raw) != len(scored):
            raise ValueError(f"ppl_scorer returned {len(raw)} values for {len(scored)} texts")
    elif settings.ppl_threshold == "robust" and len(scored) >= settings.min_pool:
        return _robust_decisions(records, scored, lang, settings, (reasons, evidence, flags, stats))
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
    stats.update(
        ppl_skipped=False,
        ppl_max=high,
        ppl_low_flag=low,
        ppl_threshold={"method": "quantile", "q": settings.ppl_quantile, "max_ppl": high},
    )
    for r, value in zip(scored, ppl, strict=True):
        if value > high:
            reasons[r] = Reason.PPL_TOO_HIGH
        elif value < low:
            flags[r].add(Flag.PPL_VERY_LOW)
    return QualityOutcome(reasons, evidence, flags, stats)


def _robust_decisions(
    records: list[list[str]],
    scored: list[int],
    lang: str,
    settings: QualitySettings,
    state: tuple[list[Reason | None], list[dict[str, Any]], list[set[str]], dict[str, Any]],
) -> QualityOutcome:
    """``ppl_threshold="robust"``: drop when z > k (``robust_scores``); flag the 1st percentile as before."""
    reasons, evidence, flags, stats = state
    ppl, z, gains, description = robust_scores([records[r] for r in scored], lang, settings)
    min_gain = description.get("order_gain", {}).get("min_gain")
    stats["ppl_quantiles"] = {f"p{int(q * 100)}": quantile(ppl, q) for q in (0.01, 0.05, 0.5, 0.95, 0.99)}
    low = quantile(ppl, settings.ppl_low_flag_quantile)
    stats.update(
        ppl_skipped=False, ppl_max=description["max_ppl"], ppl_low_flag=low, ppl_threshold=description
    )
    for r, value, score, gain in zip(scored, ppl, z, gains, strict=True):
        evidence[r]["ppl"] = value
        evidence[r]["ppl_z"] = score
        if gain is not None:
            evidence[r]["order_gain"] = gain
        if score > description["k"]:
            reasons[r] = Reason.PPL_TOO_HIGH
        elif min_gain is not None and gain is not None and gain < min_gain:
            reasons[r] = Reason.NO_WORD_ORDER
        elif value < low:
            flags[r].add(Flag.PPL_VERY_LOW)
    return QualityOutcome(reasons, evidence, flags, stats)
