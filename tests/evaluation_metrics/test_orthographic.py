"""Orthographic variants (governance.md §7 and §10 item 12) on hand-made strings and real XNLI/FLORES text."""

from __future__ import annotations

import json
import unicodedata

import pytest

from hyft.evaluation.orthographic import (
    OPERATIONS,
    applicable_operations,
    assign_operation,
    compact_whitespace,
    language_robustness,
    make_variant,
    normalize_punctuation,
    remove_diacritics,
    robustness_report,
)

XNLI_LANGUAGES = ["ar", "el", "en", "fr", "hi", "ru", "th", "ur", "vi", "zh"]
N_ROWS = 150


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _without_latin(text: str) -> str:
    return "".join(c for c in text if not unicodedata.name(c, "").startswith(("LATIN", "GREEK", "COMBINING")))


def _xnli(shared_data, lang: str) -> list[dict]:
    lines = (shared_data / "xnli" / f"dev.{lang}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:N_ROWS]]


def test_punctuation_normalisation() -> None:
    assert normalize_punctuation("，。！？") == ",.!?"
    assert normalize_punctuation("राम घर गया।") == "राम घर गया."
    assert normalize_punctuation("「你好」、《书》【注】") == '"你好","书"[注]'
    assert normalize_punctuation("“Hi” — ‘no’… «oui»") == '"Hi" - \'no\'... "oui"'
    assert normalize_punctuation("هل أنت بخير؟ نعم، شكرا؛") == "هل أنت بخير? نعم, شكرا;"
    untouched = "ＡＢＣ１２３ abc ñ 中文 हिन्दी"  # full-width letters and digits stay, as do all letters
    assert normalize_punctuation(untouched) == untouched


def test_diacritics_removal() -> None:
    assert remove_diacritics("Crème brûlée") == "Creme brulee"
    assert remove_diacritics("ёжик Ёлка") == "ежик Елка"
    for kept in ["йод", "їжак", "ў", "ø ł đ ß æ ı", "مؤسسة أحمد آمن"]:
        assert remove_diacritics(kept) == kept
    assert remove_diacritics("мо́локо") == "молоко"  # stress mark
    assert remove_diacritics("Ελληνικά tiếng Việt İstanbul") == "Ελληνικα tieng Viet Istanbul"
    assert remove_diacritics("مُحَمَّدٌ") == "محمد"  # optional Arabic vowel marks
    indic_thai_cjk = "प्राचीन संस्कृतियों ज़मीन · தமிழ் · ภาษาไทย ที่นี่ · 中文字符 · 日本語のかな · 한국어"
    assert remove_diacritics(indic_thai_cjk) == _nfc(indic_thai_cjk)


@pytest.mark.parametrize("lang", ["hi", "th", "zh", "ja", "ko", "ta", "bn", "zh_Hant"])
def test_diacritics_removal_leaves_real_brahmic_thai_and_cjk_text_unchanged(shared_data, lang) -> None:
    lines = (shared_data / "flores" / f"devtest.{lang}.txt").read_text(encoding="utf-8").splitlines()[:200]
    # Latin names inside these texts ("Erdoğan") do lose their accents; every other character stays
    for line in lines:
        assert _without_latin(remove_diacritics(line)) == _without_latin(_nfc(line))
    assert sum(remove_diacritics(line) == _nfc(line) for line in lines) >= 0.95 * len(lines)


def test_whitespace_compaction() -> None:
    assert compact_whitespace("  a\u00a0\u00a0b\u3000c \t d ") == "a b c d"
    assert compact_whitespace("one\n\n\r\ntwo\u2009\u2009three") == "one\ntwo three"
    joined = "क्\u200dष र\u200cत zero\u200bwidth soft\u00adhyphen 中 文"
    assert compact_whitespace(joined) == joined  # ZWJ, ZWNJ, ZWSP, soft hyphen and CJK spaces stay


def test_every_operation_is_idempotent_on_real_text(shared_data) -> None:
    samples = ["  a\u00a0«b»\u3000—  c…\n\n d ", "Crème「brûlée」 ёжик", "مُحَمَّد، ؟"]
    for lang in ["ar", "de", "el", "fr", "hi", "ru", "th", "ur", "vi", "zh", "ja", "uk"]:
        path = shared_data / "flores" / f"devtest.{lang}.txt"
        samples += path.read_text(encoding="utf-8").splitlines()[:40]
    for name, operation in OPERATIONS.items():
        for text in samples:
            once = operation(text)
            assert operation(once) == once, (name, text)
            assert once == _nfc(once)


def test_each_example_gets_exactly_one_operation(shared_data) -> None:
    seen_operations: set[str | None] = set()
    for lang in XNLI_LANGUAGES:
        changed_by = {name: 0 for name in OPERATIONS}
        for index, row in enumerate(_xnli(shared_data, lang)):
            fields = [row["premise"], row["hypothesis"]]
            variant, operation = make_variant(row, seed=13, record_id=f"{lang}-{index}")
            applicable = applicable_operations(fields)
            for name in applicable:
                changed_by[name] += 1
            seen_operations.add(operation)
            assert variant["label"] == row["label"]
            if operation is None:
                assert applicable == [] and variant is row
                continue
            assert operation in applicable
            new_fields = [variant["premise"], variant["hypothesis"]]
            assert new_fields == [
                OPERATIONS[operation](f) for f in fields
            ]  # that one operation, nothing else
            assert new_fields != [_nfc(f) for f in fields]
            for other in set(applicable) - {operation}:
                assert new_fields != [OPERATIONS[other](f) for f in fields]
        if lang in {"zh", "hi", "th"}:
            assert changed_by["diacritics"] == 0, lang
        if lang in {"zh", "hi"}:
            assert changed_by["punctuation"] >= 0.9 * N_ROWS, lang
        if lang in {"fr", "vi", "el"}:
            assert changed_by["diacritics"] >= 0.8 * N_ROWS, lang
    assert seen_operations == {None, "diacritics", "punctuation", "whitespace"}


def test_assignment_is_deterministic_and_depends_on_the_seed(shared_data) -> None:
    rows = _xnli(shared_data, "ur")  # Urdu: punctuation and diacritics often both apply
    keys = [(row["premise"], row["hypothesis"]) for row in rows]
    first = [assign_operation(k, seed=1, record_id=i) for i, k in enumerate(keys)]
    assert first == [assign_operation(k, seed=1, record_id=i) for i, k in enumerate(keys)]
    other_seed = [assign_operation(k, seed=2, record_id=i) for i, k in enumerate(keys)]
    multi = [i for i, k in enumerate(keys) if len(applicable_operations(k)) >= 2]
    assert len(multi) >= 10
    assert any(first[i] != other_seed[i] for i in multi)
    uniform = [assign_operation(k, seed=1, record_id=i, mode="uniform") for i, k in enumerate(keys)]
    assert set(uniform) == set(OPERATIONS)  # uniform mode also picks operations that change nothing


def test_make_variant_accepts_strings_and_sequences() -> None:
    assert make_variant("Crème brûlée", seed=0) == ("Creme brulee", "diacritics")
    assert make_variant("plain ascii text", seed=0) == ("plain ascii text", None)
    variant, operation = make_variant(("你好，世界。", "再见。"), seed=4)
    assert (variant, operation) == (("你好,世界.", "再见."), "punctuation")
    with pytest.raises(ValueError):
        make_variant({"text": "x"})


def test_robustness_reports() -> None:
    report = robustness_report({"en": 0.80, "fr": 0.75}, {"en": 0.80, "fr": 0.69}, {"en": 0.0, "fr": 0.95})
    assert report["fr"]["drop"] == pytest.approx(0.06) and report["en"]["drop"] == 0.0
    assert report["macro"]["drop"] == pytest.approx(0.03)
    assert report["macro"]["drop_gap"] == pytest.approx(0.06)
    assert report["macro"]["changed_share"] == pytest.approx(0.475)
    row = language_robustness(
        clean_correct=[1, 1, 0, 1, 1], variant_correct=[1, 0, 0, 1, 0],
        operations=["punctuation", "punctuation", None, "diacritics", None], chars_changed=[2, 4, 0, 6, 0],
    )  # fmt: skip
    assert row["n_by_operation"] == {"punctuation": 2, "none": 2, "diacritics": 1}
    assert row["changed_share"] == pytest.approx(0.6)
    assert row["drop_all"] == pytest.approx(0.4)  # 0.8 → 0.4
    assert row["drop_changed"] == pytest.approx(1 / 3)  # among the 3 changed: 3 → 2 correct
    assert row["mean_chars_changed"] == pytest.approx(4.0)
