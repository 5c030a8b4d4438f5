"""k-shot sampler: exact per-label counts per language, deterministic, disjoint from what is evaluated."""

from __future__ import annotations

from collections import Counter

import pytest

from hyft.tasks import get_task
from hyft.tasks.kshot import draw_shots, evaluation_rows, k_shot_label_counts, pair_group, sample_k_shot
from hyft.tasks.loading import DataError, DataSource

LANGUAGES = ("en", "zh", "sw")


def test_label_counts_follow_the_documented_remainder_rule():
    labels = ["entailment", "neutral", "contradiction"]
    # sorted names: contradiction, entailment, neutral; the 32 % 3 = 2 extra shots start at position seed % 3
    assert k_shot_label_counts(labels, 32, seed=0) == {"contradiction": 11, "entailment": 11, "neutral": 10}
    assert k_shot_label_counts(labels, 32, seed=1) == {"contradiction": 10, "entailment": 11, "neutral": 11}
    assert k_shot_label_counts(labels, 32, seed=2) == {"contradiction": 11, "entailment": 10, "neutral": 11}
    assert k_shot_label_counts(labels, 128, seed=0) == {"contradiction": 43, "entailment": 43, "neutral": 42}
    assert k_shot_label_counts(labels, 8, seed=4) == {"contradiction": 2, "entailment": 3, "neutral": 3}
    assert k_shot_label_counts(labels, 0, seed=0) == dict.fromkeys(sorted(labels), 0)


@pytest.mark.parametrize("k", [8, 32, 128])
def test_xnli_shots_have_exact_counts_per_label_and_language(data_dir, k):
    xnli, data = get_task("xnli"), DataSource(data_dir, "local")
    for seed in (0, 1):
        for lang in LANGUAGES:
            shots = sample_k_shot(xnli.load("dev", lang, data), k, seed)
            assert len(shots) == k and len({shot["id"] for shot in shots}) == k
            assert Counter(shot["label"] for shot in shots) == Counter(
                k_shot_label_counts(xnli.labels, k, seed)
            )
            assert all(shot["lang"] == lang and shot["id"].startswith(f"xnli/dev/{lang}/") for shot in shots)


def test_sampling_is_deterministic_and_changes_with_the_seed(data_dir):
    dev = get_task("xnli").load("dev", "en", DataSource(data_dir, "local"))
    first = [shot["id"] for shot in sample_k_shot(dev, 32, seed=3)]
    again = [shot["id"] for shot in sample_k_shot(list(dev), 32, seed=3)]
    other = [shot["id"] for shot in sample_k_shot(dev, 32, seed=4)]
    assert first == again
    assert set(first) != set(other)
    # labels are interleaved, not grouped: the first 11 shots are not all one label
    assert len({shot["label"] for shot in sample_k_shot(dev, 32, seed=3)[:11]}) > 1


def test_shots_come_from_dev_and_never_from_test(data_dir):
    xnli, data = get_task("xnli"), DataSource(data_dir, "local")
    for lang in LANGUAGES:
        test = xnli.load("test", lang, data)
        shots, evaluated = draw_shots(xnli, lang, 128, seed=0, eval_examples=test, data=data)
        assert evaluated == test  # separate split: nothing removed
        assert all(shot["id"].startswith(f"xnli/dev/{lang}/") for shot in shots)
        test_pairs = {(ex["premise"], ex["hypothesis"]) for ex in test}
        test_premises = {ex["premise"] for ex in test}
        assert not any((s["premise"], s["hypothesis"]) in test_pairs for s in shots)
        assert not any(s["premise"] in test_premises for s in shots)


def test_tasks_without_a_dev_split_remove_their_shots_from_evaluation(data_dir):
    flores, data = get_task("flores"), DataSource(data_dir, "local")
    rows = flores.load("devtest", "en-de", data)
    shots, evaluated = draw_shots(flores, "en-de", 8, seed=0, eval_examples=rows, data=data)
    assert len(shots) == 8 and len(evaluated) == len(rows) - 8
    assert not {shot["id"] for shot in shots} & {row["id"] for row in evaluated}
    assert not {shot["source"] for shot in shots} & {row["source"] for row in evaluated}


def test_impossible_requests_fail_clearly():
    pool = [{"label": "a"}] * 5 + [{"label": "b"}] * 2
    with pytest.raises(ValueError, match="label 'b' needs 3 shots but the pool has only 2"):
        sample_k_shot(pool, 6, seed=0)
    with pytest.raises(ValueError, match="pool of 7"):
        sample_k_shot(pool, 8, seed=0)
    assert sample_k_shot(pool, 0, seed=0) == []


def test_zero_shot_only_tasks_refuse_shots_before_reading_any_file(tmp_path):
    humaneval = get_task("humaneval")
    rows = [{"id": f"HumanEval/{i}", "prompt": "def f():\n"} for i in range(3)]
    with pytest.raises(DataError, match="zero-shot only"):
        draw_shots(humaneval, "en", 8, 0, rows, DataSource(tmp_path / "no-data", "local"))
    assert draw_shots(humaneval, "en", 0, 0, rows) == ([], rows)


def _premises(rows):
    return {row["premise"] for row in rows}


def test_validation_rows_share_no_premise_with_the_shots_and_the_shots_are_unchanged(data_dir):
    """XNLI dev pairs each premise with one hypothesis per label: a validation row whose premise is among
    the shots carries the one label the model never saw with it (the search read below chance)."""
    from hyft.experiments.cell_run import draw_training_set

    xnli, data = get_task("xnli"), DataSource(data_dir, "local")
    pools = {lang: xnli.load("dev", lang, data) for lang in ("en", "sw")}
    for seed in (0, 2):
        shots, validation = draw_training_set(pools, 512, seed, 64, xnli)
        for lang, pool in pools.items():
            assert shots[lang] == sample_k_shot(pool, 512, seed, label_key="label")
            assert len(validation[lang]) == 64
            assert not _premises(validation[lang]) & _premises(shots[lang])
            ids = {row["id"] for row in shots[lang]}
            assert not ids & {row["id"] for row in validation[lang]}
        # the pool does hold rows that share a premise with the shots: the filter had work to do
        rest = [row for row in pools["en"] if row["id"] not in {s["id"] for s in shots["en"]}]
        assert sum(row["premise"] in _premises(shots["en"]) for row in rest) > 100


def test_scored_rows_of_a_dev_only_task_share_no_premise_with_shots_or_excluded_rows(data_dir):
    """MNLI (GLUE ships dev only): shots, rows an adapter trained on and scored rows come from one split;
    no scored row may share a premise with the first two."""
    mnli, data = get_task("mnli"), DataSource(data_dir, "local")
    split = mnli.load("dev", "en", data)
    trained = split[1000:1100]
    shots, rows = evaluation_rows(mnli, "en", 8, 0, data, {row["id"] for row in trained}, max_examples=400)
    assert len(shots) == 8 and len(rows) == 400
    assert not _premises(rows) & (_premises(trained) | _premises(shots))
    # without the filter, the first 400 rows left would have shared premises with what was excluded
    excluded = {row["id"] for row in trained} | {row["id"] for row in shots}
    naive = [row for row in split if row["id"] not in excluded][:400]
    assert _premises(naive) & (_premises(trained) | _premises(shots))


def test_single_text_tasks_have_no_groups():
    sst2 = get_task("sst2")
    assert pair_group(sst2, {"id": "a", "sentence": "fine", "label": "positive"}) is None
    assert pair_group(get_task("qnli"), {"question": "q?", "sentence": "s."}) == "q?"
