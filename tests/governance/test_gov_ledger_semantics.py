"""Issue 16, ledger semantics: C0 is the raw input, dup_of names a record of the final view (or says why
not), and mojibake is repaired in the curated views while the ledger keeps the raw text."""

from __future__ import annotations

import json

import pytest

from hyft.governance import CurationConfig, LedgerError, curate
from hyft.governance.ledger import check_ledger, read_jsonl
from hyft.governance.validate import repair_mojibake

SENTENCES = [
    "The river flooded the valley after three days of heavy rain.",
    "My grandmother cooks the best lentil soup in the whole village.",
    "The new phone has a faster chip and a much brighter screen.",
    "Our team scored twice in the last ten minutes of the match.",
]


def _ledger(result) -> dict[int, dict]:
    return {r["line"]: r for r in read_jsonl(result.ledger_path)}


def test_c0_counts_every_raw_line_including_invalid_ones(tmp_path):
    lines = [json.dumps({"text": t, "lang": "en"}).encode() for t in SENTENCES]
    lines += [
        b"",
        b"{broken",
        b"\xff\xfe not utf-8",
        b'{"text": "", "lang": "en"}',
        b'{"text": "x y z", "lang": "xx"}',
    ]
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(b"\n".join(lines) + b"\n")
    result = curate(pool, CurationConfig(text_fields=["text"], progress=False), tmp_path / "out")
    raw_lines = len(pool.read_bytes().splitlines())
    assert raw_lines == 9
    total = result.report["total"]
    assert total["n_c0"] == total["n_input"] == raw_lines
    assert total["n_c1"] == 4 and total["stages"]["validate"]["in"] == raw_lines
    for summary in result.report["languages"].values():
        assert summary["n_c0"] == summary["n_input"]
    ledger = _ledger(result)
    assert all(row["view"] == "c0" for row in ledger.values() if row["stage"] == "validate")
    assert [r["_provenance"]["line"] for r in result.c0] == [1, 2, 3, 4]  # the file holds only records
    assert result.report["languages"]["en"]["retention"]["c0_c1"] == round(4 / 5, 4)  # the empty text is en
    header = (tmp_path / "out" / "report.md").read_text(encoding="utf-8").split("## Counts per language")[1]
    assert "| lang | n_C0 | invalid_" in header


def test_dup_of_names_a_record_of_the_final_view_or_says_why_not(tmp_path):
    short = "Yes indeed."  # two tokens: dropped at C2 as too_short
    rows = [
        {"text": short, "lang": "en"},
        {"text": short, "lang": "en"},
        {"text": SENTENCES[0], "lang": "en"},
        {"text": SENTENCES[0], "lang": "en"},
        *({"text": t, "lang": "en"} for t in SENTENCES[1:]),
    ]
    result = curate(rows, CurationConfig(text_fields=["text"], progress=False), tmp_path)
    ledger = _ledger(result)
    final = {r["id"] for r in ledger.values() if r["view"] == "c2"}
    assert ledger[1]["reason"] == "too_short"
    assert ledger[2]["reason"] == "exact_duplicate" and ledger[2]["dup_of"] == 1
    assert ledger[2]["evidence"]["representative_dropped"] == "too_short"
    assert ledger[4]["dup_of"] == 3 and 3 in final and "representative_dropped" not in ledger[4]["evidence"]
    for row in ledger.values():
        if row["dup_of"] is not None:
            assert (
                row["dup_of"] in final
                or row["evidence"]["representative_dropped"] == ledger[row["dup_of"]]["reason"]
            )
    # The check fails a ledger whose duplicate points at a dropped record without saying so.
    rows_on_disk = read_jsonl(result.ledger_path)
    views = result.views
    check_ledger(rows_on_disk, len(rows), views)
    silent = [
        dict(r, evidence={k: v for k, v in r["evidence"].items() if k != "representative_dropped"})
        for r in rows_on_disk
    ]
    with pytest.raises(LedgerError, match="representative_dropped"):
        check_ledger(silent, len(rows), views)


def test_mojibake_is_repaired_in_the_views_and_raw_in_the_ledger(tmp_path):
    broken = "Le cafÃ© est trÃ¨s bon ce matin, merci beaucoup."
    fixed = "Le café est très bon ce matin, merci beaucoup."
    assert repair_mojibake(broken) == fixed
    assert repair_mojibake(fixed) == fixed and repair_mojibake("naïve “quotes” stay") == "naïve “quotes” stay"
    rows = [
        {"text": broken, "lang": "fr"},
        {"text": "Il pleut depuis trois jours sur toute la région.", "lang": "fr"},
    ]
    result = curate(rows, CurationConfig(text_fields=["text"], progress=False), tmp_path)
    row = _ledger(result)[1]
    assert row["kept"] and "mojibake_fixed" in row["flags"]
    assert row["evidence"]["mojibake"] == {"text": broken}
    assert result.c1[0]["text"] == fixed and result.c2[0]["text"] == fixed
    assert result.c0[0]["text"] == broken  # C0 is the raw input
    assert "mojibake_fixed" not in _ledger(result)[2]["flags"]
    on_disk = read_jsonl(tmp_path / "c2.jsonl")
    assert on_disk[0]["text"] == fixed
