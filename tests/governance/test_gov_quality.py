"""governance.md §10.8 (perplexity) and the length bounds of the C2 stage, on real XNLI text."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import xnli_rows

from hyft.governance.charlm import cross_fitted_nll, fold_of
from hyft.governance.config import QualitySettings
from hyft.governance.quality import quality_language
from hyft.governance.reasons import Flag, Reason


def _premises(lang: str, count: int) -> list[str]:
    seen = dict.fromkeys(r["premise"] for r in xnli_rows(lang))
    return list(seen)[:count]


def _shuffle_chars(text: str, rng: random.Random) -> str:
    chars = list(text)
    rng.shuffle(chars)
    return "".join(chars)


@pytest.mark.parametrize("lang", ["en", "zh", "hi"])
def test_shuffled_rows_land_above_the_p95(lang):
    # 500 XNLI records (premise + hypothesis), 10 of them with every field's characters shuffled.
    # Known limit: on a pool of 500 single Chinese premises only ~6/10 shuffled rows clear the P95
    # (shuffling keeps the character distribution; a char LM needs more text to see the order).
    rng = random.Random(0)
    pool = [[r["premise"], r["hypothesis"]] for r in xnli_rows(lang)[:500]]
    garbage = [[_shuffle_chars(a, rng), _shuffle_chars(b, rng)] for a, b in rng.sample(pool, 10)]
    outcome = quality_language(pool + garbage, lang, QualitySettings(ppl_threshold="quantile"))
    assert [outcome.reasons[500 + k] for k in range(10)] == [Reason.PPL_TOO_HIGH] * 10
    dropped_clean = sum(r is Reason.PPL_TOO_HIGH for r in outcome.reasons[:500])
    assert dropped_clean <= 0.05 * 510  # the quantile, not more
    assert outcome.stats["ppl_quantiles"]["p50"] < outcome.stats["ppl_max"]


def test_thresholds_are_per_language():
    settings = QualitySettings(ppl_threshold="quantile")
    en = quality_language([[t] for t in _premises("en", 300)], "en", settings)
    zh = quality_language([[t] for t in _premises("zh", 300)], "zh", settings)
    assert zh.stats["ppl_max"] > 3 * en.stats["ppl_max"]  # Han's large alphabet: a different scale
    for outcome in (en, zh):
        dropped = sum(r is Reason.PPL_TOO_HIGH for r in outcome.reasons)
        assert 0 < dropped <= 0.05 * 300


def test_no_string_scores_under_a_model_that_saw_it():
    pool = [t.lower() for t in _premises("en", 200)]
    probe = "the committee quietly approved the harbour renovation budget on tuesday"
    once, _ = cross_fitted_nll(pool + [probe], order=4, folds=5)
    thrice, _ = cross_fitted_nll(pool + [probe] * 3, order=4, folds=5)
    assert once[-1] == pytest.approx(thrice[-1], rel=1e-12)  # its copies share its fold: unseen
    # the probe's fold is held out; every other fold's model would have seen the copies
    other_fold = next(t for t in pool if fold_of(t, 5) != fold_of(probe, 5))
    before = once[pool.index(other_fold)]
    after = thrice[pool.index(other_fold)]
    assert after != before  # the copies did enter the models that score other folds


def test_small_pool_is_scored_but_never_dropped():
    pool = [[t] for t in _premises("en", 49)]
    outcome = quality_language(pool, "en", QualitySettings())
    assert all(r is None for r in outcome.reasons)
    assert all(Flag.PPL_SKIPPED_SMALL_POOL in f for f in outcome.flags)
    assert all("ppl" in e for e in outcome.evidence)


@pytest.mark.parametrize("size", [1, 2, 7])
def test_tiny_pools_are_scored_with_the_uniform_fallback(size):
    outcome = quality_language([[t] for t in _premises("en", size)], "en", QualitySettings())
    assert all(r is None for r in outcome.reasons) and all(e["ppl"] > 1 for e in outcome.evidence)


def test_length_bounds():
    pool = [[t] for t in _premises("en", 200)]
    pool += [["Yes no"], ["word " * 900], ["Fine."]]
    outcome = quality_language(pool, "en", QualitySettings(ppl=False))
    assert outcome.reasons[200] is Reason.TOO_SHORT  # 2 tokens
    assert outcome.reasons[201] is Reason.TOO_LONG  # 4500 characters
    assert outcome.reasons[202] is Reason.TOO_SHORT
    tokens = [e["tokens"] for e in outcome.evidence[:200]]
    limit = outcome.stats["max_tokens"]
    assert limit == float(np.quantile(tokens, 0.99, method="higher"))
    assert all(
        (r is Reason.TOO_LONG) == (t > limit) for r, t in zip(outcome.reasons[:200], tokens, strict=True)
    )


def test_base_model_hook_is_used_with_the_same_quantile():
    pool = [[t] for t in _premises("en", 100)]
    seen: list[str] = []

    def scorer(texts: list[str]) -> list[float]:
        seen.extend(texts)
        return [float(len(t)) for t in texts]  # stand-in backbone: longer text, higher "perplexity"

    outcome = quality_language(
        pool, "en", QualitySettings(ppl_scorer="base_lm", ppl_threshold="quantile"), scorer
    )
    assert len(seen) == 100
    longest = sorted(range(100), key=lambda k: len(pool[k][0]))[-3:]
    assert all(outcome.reasons[k] is Reason.PPL_TOO_HIGH for k in longest)
    with pytest.raises(ValueError, match="ppl_scorer"):
        quality_language(pool, "en", QualitySettings(ppl_scorer="base_lm"), None)
