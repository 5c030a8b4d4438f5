"""Issue 16: script-aware language tags. Latin text declared in a non-Latin-script language is tagged
<lang>-Latn (BCP-47 script subtag) and `lid.romanised_policy` decides: keep (own group), drop, relabel."""

from __future__ import annotations

import json

import pytest
from conftest import xnli_rows

from hyft.governance import CurationConfig, curate
from hyft.governance.config import LidSettings
from hyft.governance.lid import identify_field
from hyft.governance.reasons import Flag, Reason
from hyft.governance.scripts import check_script

DEVANAGARI = [
    "आज मौसम बहुत अच्छा है और हम पार्क में घूमने जाएंगे।",
    "उसने बाज़ार से तीन सेब और दो केले खरीदे थे।",
    "मेरा भाई शहर के बड़े अस्पताल में काम करता है।",
]
ROMANISED = [
    "Aise mera usse picha choota tha yaar",
    "Wo shahari ilakon me bahut acche rehte hain.",
    "Mujhe lagta hai ki kal baarish hogi aur hum ghar par rahenge.",
]
ENGLISH = "The weather is very nice today and we will walk in the park."


def _pool() -> list[dict]:
    rows = [{"text": t, "lang": "hi"} for t in DEVANAGARI + ROMANISED]
    rows.append({"text": ROMANISED[0], "lang": "hi"})  # a copy: dedup runs inside the hi-Latn group
    rows.append({"text": ENGLISH, "lang": "hi"})  # English declared hi: both detectors say en
    return rows


def _run(tmp_path, policy: str):
    config = CurationConfig(text_fields=["text"], progress=False, lid={"romanised_policy": policy})
    result = curate(_pool(), config, tmp_path / policy)
    ledger = {
        r["line"]: r for r in map(json.loads, result.ledger_path.read_text(encoding="utf-8").splitlines())
    }
    return result, ledger


def test_gate_calls_latin_text_of_a_non_latin_language_romanised():
    assert check_script(ROMANISED[0], "hi", 0.5).verdict == "romanised"
    assert check_script("Wo jintian qu shangdian mai dongxi le", "zh", 0.5).verdict == "romanised"
    assert check_script("Это русский текст", "hi", 0.5).verdict == "mismatch"  # Cyrillic is no romanisation
    assert check_script("Plain English text here", "en", 0.5).verdict == "pass"


def test_detectors_separate_romanised_hindi_from_english(detectors):
    settings = LidSettings()
    for text in ROMANISED:
        outcome = identify_field(text, "hi", settings, detectors)
        assert outcome.reason is None and Flag.ROMANISED in outcome.flags, (text, outcome)
    english = identify_field(ENGLISH, "hi", settings, detectors)
    assert english.reason is Reason.LID_WRONG_LANGUAGE and english.evidence["detected"] == "en"


def test_keep_makes_its_own_group(tmp_path):
    result, ledger = _run(tmp_path, "keep")
    for line in (4, 5, 6, 7):
        assert ledger[line]["lang"] == "hi-Latn" and ledger[line]["evidence"]["script_tag"] == "hi-Latn"
        assert "romanised" in ledger[line]["flags"]
    assert [ledger[line]["kept"] for line in (4, 5, 6)] == [True, True, True]
    assert ledger[7]["reason"] == "exact_duplicate" and ledger[7]["dup_of"] == 4  # dedup within hi-Latn
    assert ledger[8]["reason"] == "lid_wrong_language" and ledger[8]["lang"] == "hi"
    assert all(ledger[line]["lang"] == "hi" and ledger[line]["kept"] for line in (1, 2, 3))
    languages = result.report["languages"]
    assert languages["hi-Latn"]["n_c2"] == 3 and languages["hi"]["n_c2"] == 3
    assert "lid_threshold" in languages["hi-Latn"]["applied"]  # dedup and quality ran for the group
    c2 = {r["_provenance"]["line"]: r for r in result.c2}
    assert c2[4]["lang"] == "hi-Latn" and c2[4]["_provenance"]["lang"] == "hi-Latn" and c2[1]["lang"] == "hi"
    assert {r["_provenance"]["line"]: r for r in result.c0}[4]["lang"] == "hi"  # C0: the record as read
    assert "| hi-Latn |" in (tmp_path / "keep" / "report.md").read_text(encoding="utf-8")


def test_drop_drops_with_its_own_reason(tmp_path):
    result, ledger = _run(tmp_path, "drop")
    for line in (4, 5, 6, 7):
        row = ledger[line]
        assert row["reason"] == "romanised" and row["stage"] == "lid" and row["lang"] == "hi"
        assert row["evidence"]["script_tag"] == "hi-Latn"
    assert "hi-Latn" not in result.report["languages"]
    assert result.report["languages"]["hi"]["dropped"]["romanised"] == 4


def test_relabel_keeps_them_under_the_declared_language(tmp_path):
    result, ledger = _run(tmp_path, "relabel")
    for line in (4, 5, 6):
        row = ledger[line]
        assert row["kept"] and row["lang"] == "hi" and "romanised" in row["flags"]
        assert row["evidence"]["script_tag"] == "hi-Latn"
    assert ledger[7]["reason"] == "exact_duplicate" and ledger[7]["lang"] == "hi"
    assert "hi-Latn" not in result.report["languages"]
    assert result.report["languages"]["hi"]["n_c2"] == 6
    assert {r["_provenance"]["line"]: r for r in result.c2}[4]["lang"] == "hi"


@pytest.fixture(scope="module")
def xnli_hi():
    """The first 600 XNLI dev hi rows: 19 % of the first 300 are romanised (gov_planting.py)."""
    return [dict(r, lang="hi") for r in xnli_rows("hi")[:600]]


def _latin_records(rows: list[dict]) -> set[int]:
    """1-based positions of rows with a mostly-Latin field."""
    return {
        k
        for k, r in enumerate(rows, start=1)
        if any(check_script(r[f], "hi", 0.5).verdict == "romanised" for f in ("premise", "hypothesis"))
    }


@pytest.mark.parametrize("policy", ["keep", "drop", "relabel"])
def test_real_xnli_hindi(policy, xnli_hi, tmp_path):
    config = CurationConfig(
        text_fields=["premise", "hypothesis"],
        label_field="label",
        progress=False,
        lid={"romanised_policy": policy},
    )
    result = curate(xnli_hi, config, tmp_path)
    ledger = [json.loads(line) for line in result.ledger_path.read_text(encoding="utf-8").splitlines()]
    latin = _latin_records(xnli_hi)
    rows = {r["line"]: r for r in ledger}
    tagged = {r["line"] for r in ledger if r["evidence"].get("script_tag") == "hi-Latn"}
    # Not tagged: rows another LID rule dropped first (a plain English field, a Devanagari field of low
    # support); every other mostly-Latin row is tagged, and nothing else is.
    other_lid = {
        line for line in latin if rows[line]["stage"] == "lid" and rows[line]["reason"] != "romanised"
    }
    assert len(latin) >= 60
    assert tagged == latin - other_lid
    assert len(other_lid) <= 0.1 * len(latin)
    if policy == "keep":
        assert all(rows[line]["lang"] == "hi-Latn" for line in tagged)
        assert result.report["languages"]["hi-Latn"]["n_input"] == len(tagged)
        assert {r["_provenance"]["lang"] for r in result.c2} == {"hi", "hi-Latn"}
    elif policy == "drop":
        assert all(rows[line]["reason"] == "romanised" for line in tagged)
        assert result.report["languages"]["hi"]["dropped"]["romanised"] == len(tagged)
    else:
        assert all(rows[line]["lang"] == "hi" and "romanised" in rows[line]["flags"] for line in tagged)
        assert sum(rows[line]["kept"] for line in tagged) >= 0.9 * len(tagged)
        assert "hi-Latn" not in result.report["languages"]
