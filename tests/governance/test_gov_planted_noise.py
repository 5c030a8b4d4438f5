"""Acceptance 1 and 2: planted noise in real XNLI dev rows (en, zh, hi, es, sw), measured from the ledger.

Thresholds and their justification (shared/design/governance.md):
- wrong-language rows: recall >= 0.95 overall, >= 0.90 per language. Donors include same-script
  languages (fr/de/es/tr/vi under en, es, sw), where only the detectors can decide.
- near duplicates (one word of a >= 60-character premise replaced; >= 25 for zh): pair recall >= 0.85.
  §4 measured 87-99% for one-word edits of 40-200-character texts at k = 16, J = 0.6.
- exact and normalisation-only copies: pair recall 1.0 (hash keys cannot miss).
- shuffled-character garbage and one-word rows: recall >= 0.9 (§5: shuffled text always lands above
  the ppl P95; one-word rows fall under the 3-token bound).
- dedup precision >= 0.95: XNLI's shared premises must not be merged (each premise has three
  hypotheses with different labels).
- clean rows dropped at C1 (LID + dedup): <= 2% for en and zh; es <= 4% and sw <= 6%, where §3
  measured 2.4% and 4.3% false LID rejections of short hypotheses on XNLI dev; hi <= 2% outside the
  script gate, whose drops are real contamination (romanised Hindi, 8% of XNLI dev hi), bounded at 12%.
- clean rows dropped at C2: <= 7% (the ppl quantile removes 5% by construction, length ~1%).
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from gov_planting import LANGS, build_pool

from hyft.governance import CurationConfig, Reason, curate
from hyft.governance.reasons import Stage, stage_of

DEDUP = {Reason.EXACT_DUPLICATE.value, Reason.NORMALIZED_DUPLICATE.value, Reason.NEAR_DUPLICATE.value}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    lines, category, partner = build_pool(seed=0)
    folder = tmp_path_factory.mktemp("planted")
    pool = folder / "pool.jsonl"
    pool.write_bytes(b"".join(line + b"\n" for line in lines))
    config = CurationConfig(text_fields=["premise", "hypothesis"], label_field="label", progress=False)
    result = curate(pool, config, folder / "out")
    rows = {}
    with result.ledger_path.open(encoding="utf-8") as handle:
        for raw in handle:
            row = json.loads(raw)
            rows[row["line"]] = row
    return pool, rows, category, partner, result


def _root(row: dict) -> int:
    return row["dup_of"] if row["reason"] in DEDUP else row["id"]


def _stage(row: dict) -> Stage:
    return stage_of(row["reason"])


def test_every_input_line_is_in_the_ledger_once(planted):
    pool, rows, category, _, result = planted
    assert sorted(rows) == list(range(1, len(category) + 1))
    assert result.report["total"]["n_input"] == len(category)
    assert sum(v["n_input"] for v in result.report["languages"].values()) == len(category)


def test_malformed_lines_carry_file_and_line(planted):
    pool, rows, category, _, _ = planted
    malformed = [line for line, kind in category.items() if kind == "malformed"]
    assert len(malformed) == 8 * len(LANGS)
    for line in malformed:
        row = rows[line]
        assert _stage(row) is Stage.VALIDATE, row
        assert row["detail"].startswith(f"{pool}:{line}: "), row["detail"]
    reasons = {rows[line]["reason"] for line in malformed}
    assert reasons == {
        "invalid_json",
        "invalid_encoding",
        "invalid_empty",
        "invalid_missing_field",
        "invalid_language",
        "invalid_field_type",
    }


def test_wrong_language_rows_are_caught(planted):
    _, rows, category, _, _ = planted
    per_lang = defaultdict(list)
    for line, kind in category.items():
        if kind == "foreign":
            per_lang[rows[line]["lang"]].append(_stage(rows[line]) is Stage.LID)
    overall = [hit for hits in per_lang.values() for hit in hits]
    assert sum(overall) / len(overall) >= 0.95
    for lang, hits in per_lang.items():
        assert sum(hits) / len(hits) >= 0.90, lang


@pytest.mark.parametrize("kind, floor", [("near", 0.85), ("exact", 1.0), ("normalized", 1.0)])
def test_planted_duplicates_are_merged_with_their_original(planted, kind, floor):
    _, rows, category, partner, _ = planted
    evaluable = [
        (line, partner[line])
        for line, k in category.items()
        if k == kind and _stage(rows[line]) is not Stage.LID and _stage(rows[partner[line]]) is not Stage.LID
    ]
    assert len(evaluable) >= {"near": 90, "exact": 70, "normalized": 20}[kind]
    merged = [
        _root(rows[a]) == _root(rows[b]) and (rows[a]["reason"] in DEDUP or rows[b]["reason"] in DEDUP)
        for a, b in evaluable
    ]
    assert sum(merged) / len(merged) >= floor, (kind, sum(merged), len(merged))


def test_dedup_precision_and_shared_premises_survive(planted):
    _, rows, category, partner, _ = planted
    planted_pairs = {line for line in partner} | set(partner.values())
    dedup_drops = [line for line, row in rows.items() if row["reason"] in DEDUP]
    correct = [line in planted_pairs for line in dedup_drops]
    assert sum(correct) / len(correct) >= 0.95, [
        rows[x] for x, ok in zip(dedup_drops, correct, strict=True) if not ok
    ][:3]
    # every dup_of points at a record that survived dedup; near drops carry their measured pair
    survivors = {row["id"] for row in rows.values() if row["view"] in ("c1", "c2")}
    assert all(rows[line]["dup_of"] in survivors for line in dedup_drops)
    for line in dedup_drops:
        evidence = rows[line]["evidence"]
        if rows[line]["reason"] == Reason.NEAR_DUPLICATE.value:
            assert 0 <= evidence["hamming"] <= 16 and evidence["jaccard"] >= 0.6, evidence


def test_garbage_and_one_word_rows_are_dropped(planted):
    _, rows, category, _, _ = planted
    for kind in ("shuffled", "truncated"):
        lines = [
            line
            for line, k in category.items()
            if k == kind and not (kind == "shuffled" and rows[line]["lang"] == "zh")
        ]
        dropped = [not rows[line]["kept"] for line in lines]
        assert sum(dropped) / len(dropped) >= 0.9, kind
    # Known limit of the robust rule (docs/governance-thresholds.md): shuffled Chinese in a ~270-row pool
    # scores z 2.5-3 against k = 4; the old 95th-percentile cut caught these only because it always drops 5 %.
    zh_shuffled = [
        not rows[line]["kept"]
        for line, k in category.items()
        if k == "shuffled" and rows[line]["lang"] == "zh"
    ]
    assert sum(zh_shuffled) >= 1, zh_shuffled
    truncated = [rows[line]["reason"] for line, k in category.items() if k == "truncated"]
    assert truncated.count("too_short") >= len(truncated) // 2


def test_clean_rows_are_kept(planted):
    _, rows, category, partner, _ = planted
    originals = set(partner.values())
    c1_bounds = {"en": 0.02, "zh": 0.02, "es": 0.04, "sw": 0.06, "hi": 0.02}
    for lang in LANGS:
        clean = [rows[line] for line, k in category.items() if k == "clean" and rows[line]["lang"] == lang]
        # A clean original dropped in favour of its planted copy (which came first) is a correct merge.
        lost = [
            r
            for r in clean
            if r["view"] in (None, "c0") and not (r["line"] in originals and r["reason"] in DEDUP)
        ]
        script = [r for r in lost if r["reason"] == Reason.LID_SCRIPT_MISMATCH.value]
        other = [r for r in lost if r["reason"] != Reason.LID_SCRIPT_MISMATCH.value or lang != "hi"]
        assert len(other) / len(clean) <= c1_bounds[lang], (lang, [(r["reason"], r["line"]) for r in other])
        assert len(script) / len(clean) <= (0.12 if lang == "hi" else 0.0), lang
        reached_c1 = [r for r in clean if r["view"] in ("c1", "c2")]
        dropped_c2 = [r for r in reached_c1 if r["view"] == "c1"]
        assert len(dropped_c2) / len(reached_c1) <= 0.07, lang


def test_views_match_ledger_and_carry_provenance(planted):
    _, rows, _, _, result = planted
    c2_lines = sorted(row["line"] for row in rows.values() if row["view"] == "c2")
    assert [r["_provenance"]["line"] for r in result.c2] == c2_lines
    assert len(result.c0) >= len(result.c1) >= len(result.c2) > 0
    first = result.c2[0]
    assert {"premise", "hypothesis", "label", "lang", "_provenance"} <= set(first)
    assert first["_provenance"]["lang"] == rows[first["_provenance"]["line"]]["lang"]
