"""The NLI set's noisy curation pool and its answer key (nli.pool*.jsonl): alignment, each planted category is
what it claims, no test leak. The topic pool of `make demo` is checked in test_demo_topic.py."""

from __future__ import annotations

import collections
import importlib.util
import json
import re
import unicodedata
from pathlib import Path

import pytest

from hyft.data import DEMO_LANGUAGES, NLI_LABELS, demo_names, demo_path, nli_file_name

CATEGORIES = {"clean", "wrong_lang", "exact_dup", "near_dup", "junk", "empty", "malformed"}
TEXT_FIELDS = ("premise", "hypothesis")
TOOLS = Path(__file__).resolve().parents[2] / "tools" / "make_demo_data.py"


def read_lines(name: str) -> list[str]:
    return demo_path(name).read_text(encoding="utf-8").split("\n")[:-1]


def parse_record(line: str) -> dict | None:
    """The record if the line is valid JSON with the demo schema, else None (what a validator must drop)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or set(record) != {"id", "lang", *TEXT_FIELDS, "label"}:
        return None
    if not all(isinstance(record[f], str) for f in TEXT_FIELDS) or record["lang"] not in DEMO_LANGUAGES:
        return None
    return record


def shingles(text: str) -> set[str]:
    """Character 2-grams of the case- and punctuation-blind text (Han) or 3-grams (other scripts)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join("".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text).split())
    if re.search(r"[\u4e00-\u9fff]", text):
        text, n = text.replace(" ", ""), 2
    else:
        text, n = f" {text} ", 3
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def jaccard(a: str, b: str) -> float:
    left, right = shingles(a), shingles(b)
    return len(left & right) / len(left | right)


@pytest.fixture(scope="module")
def pool() -> tuple[list[str], list[dict]]:
    lines = read_lines("nli.pool.jsonl")
    truth = [json.loads(line) for line in read_lines("nli.pool.truth.jsonl")]
    return lines, truth


def test_truth_aligns_line_by_line_and_uses_the_closed_category_set(pool):
    lines, truth = pool
    assert 400 <= len(lines) <= 600
    assert len(truth) == len(lines)
    assert [row["line"] for row in truth] == list(range(1, len(lines) + 1))
    counts = collections.Counter(row["category"] for row in truth)
    assert set(counts) == CATEGORIES, counts
    assert counts["clean"] >= 0.5 * len(lines), counts  # noise is visible but the pool is still mostly usable
    for lang in DEMO_LANGUAGES:  # every language gets every kind of noise except malformed lines
        present = {row["category"] for row in truth if row["lang"] == lang}
        assert present >= CATEGORIES - {"malformed"}, (lang, present)


def test_only_malformed_lines_fail_validation(pool):
    lines, truth = pool
    for line, row in zip(lines, truth, strict=True):
        record = parse_record(line)
        if row["category"] == "malformed":
            assert record is None, row
        else:
            assert record is not None and record["lang"] == row["lang"] and record["label"] in NLI_LABELS, row
            assert record["id"] == f"pool-{row['line']:05d}"


def test_clean_lines_are_dev_pairs_and_no_test_text_leaks(pool):
    lines, truth = pool
    dev = {}
    for lang in DEMO_LANGUAGES:
        for line in read_lines(nli_file_name("dev", lang)):
            record = json.loads(line)
            dev[record["id"]] = (record["premise"], record["hypothesis"], record["label"])
    clean = [(json.loads(lines[row["line"] - 1]), row) for row in truth if row["category"] == "clean"]
    for record, row in clean:
        assert (record["premise"], record["hypothesis"], record["label"]) == dev[row["source"]], row
    assert len({row["source"] for _, row in clean}) == len(clean) == len(dev)
    pool_text = "\n".join(lines)
    for lang in DEMO_LANGUAGES:
        for line in read_lines(nli_file_name("test", lang)):
            test_record = json.loads(line)
            assert test_record["premise"] not in pool_text, test_record["id"]


def test_duplicates_point_back_to_an_earlier_kept_original(pool):
    lines, truth = pool
    for row in truth:
        if row["category"] not in ("exact_dup", "near_dup"):
            assert row["dup_of"] is None, row
            continue
        assert row["dup_of"] < row["line"] and truth[row["dup_of"] - 1]["category"] == "clean", row
        copy, original = json.loads(lines[row["line"] - 1]), json.loads(lines[row["dup_of"] - 1])
        assert copy["label"] == original["label"] and copy["lang"] == original["lang"], row
        fields = [(copy[f], original[f]) for f in TEXT_FIELDS]
        if row["category"] == "exact_dup":
            assert all(a == b for a, b in fields), row
        else:
            assert any(a != b for a, b in fields), row
            assert all(jaccard(a, b) >= 0.6 for a, b in fields), (row, [jaccard(a, b) for a, b in fields])


def test_empty_and_junk_lines_are_what_they_claim(pool):
    lines, truth = pool
    seen = collections.Counter()
    for row in truth:
        if row["category"] not in ("empty", "junk"):
            continue
        record = json.loads(lines[row["line"] - 1])
        seen[row["kind"]] += 1
        if row["category"] == "empty":
            assert any(not record[f].strip() for f in TEXT_FIELDS), row
        elif row["kind"] == "repeated_text":
            assert len(record["premise"]) > 4000, row
        elif row["kind"] == "truncated":
            assert all(len(record[f].split()) == 1 and len(record[f]) <= 12 for f in TEXT_FIELDS), row
        elif row["kind"] == "no_letters":
            assert not any(c.isalpha() for f in TEXT_FIELDS for c in record[f]), row
        elif row["kind"] in ("html", "url"):
            assert re.search(r"<\w+|https?://|www\.", record["premise"]), row
    assert {
        "shuffled_chars",
        "keyboard_mash",
        "boilerplate",
        "url",
        "html",
        "truncated",
        "repeated_text",
    } <= set(seen)


def test_wrong_language_lines_are_detectably_foreign(pool):
    """Each planted line has a field whose script or py3langid's top language differs from the declared
    one, while nearly all clean lines look like their own language (short hypotheses are the exception)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    native_script = {"hi": "DEVANAGARI", "zh": "CJK", "en": "LATIN", "es": "LATIN", "fr": "LATIN"}
    lines, truth = pool
    looks_foreign = collections.defaultdict(list)
    for row in (row for row in truth if row["category"] in ("wrong_lang", "clean")):
        record = json.loads(lines[row["line"] - 1])
        foreign = False
        for field in TEXT_FIELDS:
            letters = [unicodedata.name(c, "?").split()[0] for c in record[field] if c.isalpha()]
            script_ok = letters.count(native_script[row["lang"]]) >= 0.5 * len(letters)
            foreign |= not script_ok or identifier.classify(record[field])[0] != row["lang"]
        looks_foreign[row["category"]].append(foreign)
    assert all(looks_foreign["wrong_lang"]), looks_foreign["wrong_lang"]
    assert sum(looks_foreign["clean"]) <= 0.1 * len(looks_foreign["clean"])


def test_generator_is_deterministic_and_the_committed_files_are_current():
    spec = importlib.util.spec_from_file_location("make_demo_data", TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first, second = module.build_pool(), module.build_pool()
    assert first == second
    lines, truth = first
    assert lines == read_lines("nli.pool.jsonl")
    assert [json.dumps(row) for row in truth] == read_lines("nli.pool.truth.jsonl")


def test_demo_path_resolves_every_file_and_explains_a_typo():
    names = demo_names()
    assert {"pool.jsonl", "pool.truth.jsonl", "nli.pool.jsonl", "nli.pool.truth.jsonl"} <= set(names)
    assert {nli_file_name(s, lang) for s in ("dev", "test") for lang in DEMO_LANGUAGES} <= set(names)
    for name in names:
        path = demo_path(name)
        assert path.is_file() and path.name == name and path.stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="Did you mean 'nli.dev.hi.jsonl'"):
        demo_path("nli.dev.hindi.jsonl")
    with pytest.raises(FileNotFoundError):
        demo_path("../__init__.py")
    with pytest.raises(FileNotFoundError):
        nli_file_name("train", "en")
