"""The demo topic set (topic.{dev,test}.<lang>.jsonl) and its noisy pool (pool.jsonl + pool.truth.jsonl):
parallel ids and labels, balance, no dev/test overlap, the answer key matches the pool, and curation
catches the planted noise in the amounts the answer key predicts."""

from __future__ import annotations

import collections
import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest

from hyft.data import DEMO_LANGUAGES, DEMO_SPLITS, TOPIC_LABELS, demo_names, demo_path, topic_file_name

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "make_demo_topic.py"
CATEGORIES = {"clean", "wrong_lang", "exact_dup", "near_dup", "junk", "empty", "malformed"}
SIZES = {"dev": 64, "test": 96}
SCRIPT = {"hi": "DEVANAGARI", "zh": "CJK", "en": "LATIN", "es": "LATIN", "fr": "LATIN"}


def read_lines(name: str) -> list[str]:
    return demo_path(name).read_text(encoding="utf-8").split("\n")[:-1]


@pytest.fixture(scope="module")
def topic() -> dict[tuple[str, str], list[dict]]:
    return {
        (split, lang): [json.loads(line) for line in read_lines(topic_file_name(split, lang))]
        for split in DEMO_SPLITS
        for lang in DEMO_LANGUAGES
    }


@pytest.fixture(scope="module")
def pool() -> tuple[list[str], list[dict]]:
    return read_lines("pool.jsonl"), [json.loads(line) for line in read_lines("pool.truth.jsonl")]


def test_files_have_the_schema_sizes_and_balanced_labels(topic):
    for (split, lang), rows in topic.items():
        assert len(rows) == SIZES[split], (split, lang)
        for number, row in enumerate(rows, start=1):
            assert set(row) == {"id", "lang", "text", "label"}, row
            assert row["id"] == f"{lang}-{split}-{number:03d}" and row["lang"] == lang, row
            assert row["label"] in TOPIC_LABELS and row["text"].strip() == row["text"] and row["text"], row
        counts = collections.Counter(row["label"] for row in rows)
        assert counts == {label: SIZES[split] // len(TOPIC_LABELS) for label in TOPIC_LABELS}, (split, lang)


def test_ids_and_labels_are_parallel_across_languages(topic):
    for split in DEMO_SPLITS:
        english = [(row["id"].split("-", 1)[1], row["label"]) for row in topic[(split, "en")]]
        for lang in DEMO_LANGUAGES:
            assert [(row["id"].split("-", 1)[1], row["label"]) for row in topic[(split, lang)]] == english, (
                lang
            )


def test_texts_are_unique_dev_and_test_are_disjoint_and_in_their_own_script(topic):
    for lang in DEMO_LANGUAGES:
        texts = [row["text"] for split in DEMO_SPLITS for row in topic[(split, lang)]]
        assert len(set(texts)) == len(texts), lang  # also: no text is in both dev and test
        for text in texts:
            letters = [unicodedata.name(c, "?").split()[0] for c in text if c.isalpha()]
            assert letters.count(SCRIPT[lang]) >= 0.7 * len(letters), (lang, text)  # USB-C, PDF


def test_the_task_loads_the_files():
    from hyft.tasks.registry import get_task

    task = get_task("demo-topic")
    assert task.text_fields == ("text",) and task.labels == TOPIC_LABELS and task.shot_split == "dev"
    rows = task.load("test", "zh")
    assert len(rows) == SIZES["test"] and rows[0]["id"] == "demo-topic/test/zh/1"
    assert {"id", "lang", "text", "label"} == set(rows[0])


def test_answer_key_matches_the_pool(pool, topic):
    lines, truth = pool
    assert len(truth) == len(lines) and [row["line"] for row in truth] == list(range(1, len(lines) + 1))
    counts = collections.Counter(row["category"] for row in truth)
    assert set(counts) == CATEGORIES and counts["clean"] == sum(SIZES["dev"] for _ in DEMO_LANGUAGES), counts
    for lang in DEMO_LANGUAGES:  # every language gets every kind of noise except malformed lines
        assert {row["category"] for row in truth if row["lang"] == lang} >= CATEGORIES - {"malformed"}, lang
    dev = {row["id"]: row for lang in DEMO_LANGUAGES for row in topic[("dev", lang)]}
    test_texts = {row["text"] for lang in DEMO_LANGUAGES for row in topic[("test", lang)]}
    for line, row in zip(lines, truth, strict=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if row["category"] == "malformed":
            valid = (
                isinstance(record, dict)
                and set(record) == {"id", "lang", "text", "label"}
                and isinstance(record["text"], str)
                and record["lang"] in DEMO_LANGUAGES
            )
            assert not valid, row
            continue
        assert record["id"] == f"pool-{row['line']:05d}" and record["lang"] == row["lang"], row
        assert record["label"] in TOPIC_LABELS and record["text"] not in test_texts, row
        if row["category"] == "clean":
            assert (record["text"], record["label"]) == (
                dev[row["source"]]["text"],
                dev[row["source"]]["label"],
            ), row
        if row["category"] in ("exact_dup", "near_dup"):
            original = truth[row["dup_of"] - 1]
            assert row["dup_of"] < row["line"] and original["category"] == "clean", row
            assert original["source"] == row["source"] and record["label"] == dev[row["source"]]["label"], row
            same = record["text"] == dev[row["source"]]["text"]
            assert same == (row["category"] == "exact_dup"), row
        else:
            assert row["dup_of"] is None, row
        if row["category"] == "empty":
            assert not record["text"].strip(), row
    clean_sources = [row["source"] for row in truth if row["category"] == "clean"]
    assert sorted(clean_sources) == sorted(dev), "each dev row is in the pool exactly once as a clean line"


def test_generator_is_deterministic_and_the_committed_files_are_current():
    spec = importlib.util.spec_from_file_location("make_demo_topic", TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first, second = module.build_pool(), module.build_pool()
    assert first == second
    lines, truth = first
    assert lines == read_lines("pool.jsonl")
    assert [json.dumps(row) for row in truth] == read_lines("pool.truth.jsonl")
    assert {topic_file_name(s, lang) for s in DEMO_SPLITS for lang in DEMO_LANGUAGES} <= set(demo_names())


@pytest.fixture(scope="module")
def curated(tmp_path_factory, pool):
    """(truth rows, ledger rows by line) after curating the shipped pool with the demo's settings."""
    import yaml

    from hyft.governance import CurationConfig, curate

    settings = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text())
    config = CurationConfig(**settings["curation"]["settings"])
    result = curate(demo_path("pool.jsonl"), config, tmp_path_factory.mktemp("topic-pool"))
    with result.ledger_path.open(encoding="utf-8") as handle:
        ledger = {row["line"]: row for row in map(json.loads, handle)}
    return pool[1], ledger, result.report


def test_curation_catches_the_planted_noise(curated):
    truth, ledger, report = curated
    assert sorted(ledger) == [row["line"] for row in truth]
    by_category: dict[str, list[tuple[dict, dict]]] = collections.defaultdict(list)
    for row in truth:
        by_category[row["category"]].append((row, ledger[row["line"]]))
    line_of_id = {entry["id"]: line for line, entry in ledger.items()}

    # Validation drops exactly the malformed and empty lines.
    invalid = [row for row, entry in ((r, ledger[r["line"]]) for r in truth) if entry["stage"] == "validate"]
    assert sorted(r["line"] for r in invalid) == sorted(
        r["line"] for r in truth if r["category"] in ("malformed", "empty")
    )
    assert all(entry["reason"] == "invalid_empty" for _, entry in by_category["empty"])
    # Every copy is removed by dedup and points back at the original the answer key names.
    for category, reasons in (
        ("exact_dup", {"exact_duplicate"}),
        ("near_dup", {"exact_duplicate", "normalized_duplicate", "near_duplicate"}),
    ):
        for row, entry in by_category[category]:
            assert entry["reason"] in reasons and line_of_id[entry["dup_of"]] == row["dup_of"], (row, entry)
    # Wrong language: LID drops all but the known hard case (Marathi/Nepali under hi, both Devanagari).
    for row, entry in by_category["wrong_lang"]:
        if row["kind"] not in ("mr", "ne"):
            assert entry["stage"] == "lid", (row, entry)
    junk = by_category["junk"]
    for row, entry in junk:
        if row["kind"] in ("url", "html", "no_letters", "truncated", "repeated_text"):
            assert not entry["kept"], (row, entry)
    assert sum(not entry["kept"] for _, entry in junk) >= 0.85 * len(junk)
    # Clean lines: none lost at C1; C2's perplexity quantile may take a few (it drops 5 % by design).
    clean = by_category["clean"]
    assert all(entry["view"] in ("c1", "c2") for _, entry in clean)
    assert sum(entry["view"] == "c2" for _, entry in clean) >= 0.95 * len(clean)
    # The report's counts agree with the answer key.
    stages = report["total"]["stages"]
    assert report["total"]["n_input"] == len(truth)
    assert sum(stages["validate"]["dropped"].values()) == len(by_category["malformed"]) + len(
        by_category["empty"]
    )
    dedup = sum(stages["exact_dedup"]["dropped"].values()) + sum(stages["near_dedup"]["dropped"].values())
    assert dedup == len(by_category["exact_dup"]) + len(by_category["near_dup"]) + sum(
        entry["stage"] in ("exact_dedup", "near_dedup") for _, entry in junk
    )
    c2_noise = sum(
        entry["view"] == "c2"
        for category, pairs in by_category.items()
        if category != "clean"
        for _, entry in pairs
    )
    assert report["total"]["n_c2"] == sum(entry["view"] == "c2" for _, entry in clean) + c2_noise
    assert c2_noise <= 0.1 * len([row for row in truth if row["category"] != "clean"])
