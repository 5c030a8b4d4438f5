"""Table II / Table III Markdown: rendered from plain dicts, parsed back to the same numbers."""

from __future__ import annotations

import pytest

from hyft.evaluation.tables import (
    classification_table,
    parse_markdown_table,
    robustness_table,
    task_tables,
    translation_table,
)

XNLI = {
    "LoRA": {
        "kind": "classification",
        "accuracy": {"en": 0.8123, "zh": 0.7349, "hi": 0.6651},
        "macro": 0.7374,
        "delta": 0.1472,
        "avg_ece": 0.0512,
    },
    "Hybrid": {
        "kind": "classification",
        "accuracy": {"en": 0.8201, "zh": 0.7555, "hi": 0.7049},
        "macro": 0.7602,
        "delta": 0.1152,
        "avg_ece": 0.0388,
        "avg_ece_temperature_scaled": 0.0211,
        "per_language": {
            "en": {"orthographic": {"drop_all": 0.01, "changed_share": 0.05}},
            "zh": {"orthographic": {"drop_all": 0.031, "changed_share": 0.998}},
        },
        "orthographic": {"macro": {"drop": 0.0204}},
    },
}
FLORES = {
    "LoRA": {
        "kind": "translation",
        "bleu": {"en-zh": 21.04, "zh-en": 18.96},
        "avg_bleu": 20.0,
        "delta_bleu": 2.08,
        "chrf": {"en-zh": 30.0, "zh-en": 45.5},
        "avg_chrf": 37.75,
        "delta_chrf": 15.5,
    },
    "Base": {"kind": "translation", "bleu": {"en-zh": 10.0}, "avg_bleu": 10.0, "delta_bleu": None},
}


def test_table_ii_layout_and_parse_back():
    markdown = classification_table(XNLI)
    lines = markdown.splitlines()
    assert lines[0] == "| Method | EN | ZH | HI | Macro | Δ | Avg-ECE | Avg-ECE (TS) |"
    rows = parse_markdown_table(markdown)
    assert [row["Method"] for row in rows] == ["LoRA", "Hybrid"]
    for row in rows:
        results = XNLI[row["Method"]]
        for lang in ("en", "zh", "hi"):
            assert float(row[lang.upper()]) == pytest.approx(100 * results["accuracy"][lang], abs=0.05)
        assert float(row["Macro"]) == pytest.approx(100 * results["macro"], abs=0.05)
        assert float(row["Δ"]) == pytest.approx(100 * results["delta"], abs=0.05)
        assert float(row["Avg-ECE"]) == pytest.approx(100 * results["avg_ece"], abs=0.05)
    assert rows[0]["Avg-ECE (TS)"] == "–" and rows[1]["Avg-ECE (TS)"] == "2.1"
    assert rows[0]["EN"] == "81.2" and rows[1]["HI"] == "70.5"  # rounding to one decimal
    only = parse_markdown_table(classification_table(XNLI, languages=["hi"], digits=2))
    assert (
        list(only[0]) == ["Method", "HI", "Macro", "Δ", "Avg-ECE", "Avg-ECE (TS)"]
        and only[0]["HI"] == "66.51"
    )


def test_table_iii_layout_and_parse_back():
    rows = parse_markdown_table(translation_table(FLORES, "bleu"))
    assert list(rows[0]) == ["Method", "EN→ZH", "ZH→EN", "Avg", "Δ"]
    assert rows[0] == {"Method": "LoRA", "EN→ZH": "21.0", "ZH→EN": "19.0", "Avg": "20.0", "Δ": "2.1"}
    assert rows[1] == {"Method": "Base", "EN→ZH": "10.0", "ZH→EN": "–", "Avg": "10.0", "Δ": "–"}
    chrf = parse_markdown_table(translation_table(FLORES, "chrf"))
    assert float(chrf[0]["ZH→EN"]) == 45.5 and chrf[1]["EN→ZH"] == "–"


def test_robustness_table_and_task_sections():
    rows = parse_markdown_table(robustness_table({"Hybrid": XNLI["Hybrid"]}))
    assert rows[0]["ZH drop"] == "3.1" and rows[0]["Macro drop"] == "2.0" and rows[0]["ZH changed"] == "99.8"
    assert rows[0]["HI drop"] == "–"
    sections = task_tables("flores", FLORES)
    assert sections.startswith("### flores") and "BLEU" in sections and "chrF" in sections
    assert parse_markdown_table(sections)[0]["EN→ZH"] == "21.0"  # the first table is BLEU
