"""The hand-written demo NLI set: schema, counts, exact label balance, scripts, no leakage, alignment."""

from __future__ import annotations

import collections
import json
import re
import unicodedata

import pytest

from hyft.data import DEMO_LANGUAGES, DEMO_SPLITS, NLI_LABELS, demo_path, nli_file_name

MIN_PAIRS = {"dev": 60, "test": 90}
MIN_PAIRS_PER_LANGUAGE = 150
ID_PATTERN = re.compile(r"^(?P<lang>[a-z]{2})-(?P<split>dev|test)-(?P<item>\d{3})-(?P<slot>[123])$")
HAN = re.compile(r"[\u4e00-\u9fff]")
KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
# Characters that exist only in traditional Chinese: the zh files must be simplified.
TRADITIONAL_ONLY = set("們這來時會為說個書車門長開關國點買賣錢見學電話愛飛機場讀寫歲")


def load(split: str, lang: str) -> list[dict]:
    with demo_path(nli_file_name(split, lang)).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def letters_by_script(text: str) -> collections.Counter:
    """Count letters per script, using the first word of the Unicode character name
    (LATIN, DEVANAGARI, CJK)."""
    counts: collections.Counter = collections.Counter()
    for char in text:
        if unicodedata.category(char).startswith("L"):
            counts[unicodedata.name(char, "UNKNOWN").split()[0]] += 1
    return counts


def canonical(text: str) -> str:
    """Case-, width- and punctuation-blind form used to catch near-identical pairs."""
    kept = (
        c for c in unicodedata.normalize("NFKC", text).casefold() if unicodedata.category(c)[0] not in "PZ"
    )
    return "".join(kept)


@pytest.fixture(scope="module")
def nli() -> dict[tuple[str, str], list[dict]]:
    return {(split, lang): load(split, lang) for split in DEMO_SPLITS for lang in DEMO_LANGUAGES}


def test_every_record_has_the_schema_and_a_matching_id(nli):
    for (split, lang), records in nli.items():
        assert records, f"{split}.{lang} is empty"
        for record in records:
            assert set(record) == {"id", "lang", "premise", "hypothesis", "label"}, record
            match = ID_PATTERN.match(record["id"])
            assert match and match["lang"] == lang and match["split"] == split, record["id"]
            assert record["lang"] == lang
            assert record["label"] in NLI_LABELS
            for field in ("premise", "hypothesis"):
                text = record[field]
                assert text == text.strip() and text and "  " not in text, (record["id"], field)
                assert unicodedata.is_normalized("NFC", text), (record["id"], field)
        ids = [record["id"] for record in records]
        assert len(ids) == len(set(ids)), f"duplicate ids in {split}.{lang}"


def test_counts_reach_the_thresholds_and_labels_are_exactly_balanced(nli):
    for lang in DEMO_LANGUAGES:
        total = 0
        for split in DEMO_SPLITS:
            records = nli[(split, lang)]
            labels = collections.Counter(record["label"] for record in records)
            assert set(labels) == set(NLI_LABELS), (split, lang, labels)
            assert len(set(labels.values())) == 1, f"{split}.{lang} label counts differ: {labels}"
            assert len(records) >= MIN_PAIRS[split], (split, lang, len(records))
            total += len(records)
        assert total >= MIN_PAIRS_PER_LANGUAGE, (lang, total)


def test_each_premise_has_distinct_labels_and_no_pair_repeats(nli):
    for (split, lang), records in nli.items():
        by_premise = collections.defaultdict(list)
        for record in records:
            by_premise[record["premise"]].append(record["label"])
        for premise, labels in by_premise.items():
            assert len(labels) <= 3 and len(set(labels)) == len(labels), (split, lang, premise, labels)
        # Compare case- and punctuation-blind so near-identical pairs count as repeats too.
        keys = [(canonical(r["premise"]), canonical(r["hypothesis"])) for r in records]
        assert len(keys) == len(set(keys)), f"repeated pair in {split}.{lang}"
        hypotheses = [canonical(r["hypothesis"]) for r in records]
        assert len(hypotheses) == len(set(hypotheses)), f"repeated hypothesis in {split}.{lang}"


def test_dev_and_test_share_no_premise_or_pair(nli):
    for lang in DEMO_LANGUAGES:
        dev = {canonical(r["premise"]) for r in nli[("dev", lang)]}
        test = {canonical(r["premise"]) for r in nli[("test", lang)]}
        assert not dev & test, (lang, sorted(dev & test)[:3])


def test_each_language_is_written_in_its_own_script(nli):
    for (_split, lang), records in nli.items():
        for record in records:
            for field in ("premise", "hypothesis"):
                text = record[field]
                scripts = letters_by_script(text)
                where = (record["id"], field, text)
                if lang == "zh":
                    assert HAN.search(text) and not KANA_HANGUL.search(text), where
                    assert scripts["CJK"] == sum(scripts.values()), where
                    assert not TRADITIONAL_ONLY & set(text), where
                elif lang == "hi":
                    assert scripts["DEVANAGARI"] >= 0.9 * sum(scripts.values()), where
                    assert "।" in text, where  # sentences end with a danda, not a period
                else:
                    assert scripts["LATIN"] == sum(scripts.values()), where


def test_spanish_and_french_carry_their_diacritics(nli):
    """A set typed without accents would still pass the Latin-script check; these words need them."""
    required = {
        "es": ("María", "sábado", "está", "ningún", "árboles", "también", "después"),
        "fr": ("été", "sœur", "déjà", "Noël", "végétarien", "fraîche", "grand-mère"),
    }
    for lang, words in required.items():
        text = " ".join(
            r["premise"] + " " + r["hypothesis"] for split in DEMO_SPLITS for r in nli[(split, lang)]
        )
        assert [word for word in words if word not in text] == [], lang


def test_translations_are_aligned_across_languages(nli):
    """Ids are shared across languages: item 007 slot 2 is the same pair (and label) in every language."""
    for split in DEMO_SPLITS:
        reference = {r["id"].split("-", 1)[1]: r["label"] for r in nli[(split, "en")]}
        for lang in DEMO_LANGUAGES:
            labels = {r["id"].split("-", 1)[1]: r["label"] for r in nli[(split, lang)]}
            assert labels == reference, (split, lang)


def test_negation_is_not_a_label_giveaway_in_english(nli):
    """Contradictions must not be 'the ones with not': negation occurs under every label."""
    negation = re.compile(r"\b(not|no|never|nobody|none|no longer)\b|n't", re.IGNORECASE)
    records = [r for split in DEMO_SPLITS for r in nli[(split, "en")]]
    rate = {
        label: sum(bool(negation.search(r["hypothesis"])) for r in records if r["label"] == label)
        / sum(r["label"] == label for r in records)
        for label in NLI_LABELS
    }
    assert all(0.05 <= value <= 0.35 for value in rate.values()), rate
