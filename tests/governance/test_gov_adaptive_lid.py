"""Issue 16: FineWeb-2's adaptive LID threshold, tau = clip(median - sd, 0.3, 0.9) per language."""

from __future__ import annotations

import json
import math

import pytest
from conftest import xnli_rows

from hyft.governance import CurationConfig, curate
from hyft.governance.config import LidSettings
from hyft.governance.lid import adaptive_threshold
from hyft.governance.stages import dedup_and_filter_language, lid_survivors_by_language, validate_and_identify
from hyft.governance.text import lid_text


def test_tau_by_hand():
    # median 0.7; deviations -.2 -.1 0 .1 .2 -> population sd sqrt(0.1 / 5) = 0.141421; tau 0.558579
    assert adaptive_threshold([0.9, 0.8, 0.7, 0.6, 0.5]) == {"tau": 0.5586, "median": 0.7, "sd": 0.1414}
    # clipped below: median 0.2, sd 0.0236 -> 0.176 -> 0.3; above: 1 - 0 -> 0.9
    assert adaptive_threshold([0.2, 0.2, 0.25])["tau"] == 0.3
    assert adaptive_threshold([1.0, 1.0, 1.0])["tau"] == 0.9
    assert adaptive_threshold([0.2, 0.2, 0.25], low=0.1)["tau"] == pytest.approx(
        0.2 - math.sqrt(0.0025 * 2 / 9), abs=1e-4
    )
    with pytest.raises(ValueError):
        adaptive_threshold([])


class FakeDetectors:
    """Detectors with set outputs per text, so every support below is known by hand."""

    def __init__(self, fasttext: dict[str, list], py3langid: dict[str, list]):
        self.ft, self.py = fasttext, py3langid

    def fasttext_top(self, text: str) -> list[tuple[str, float]]:
        return self.ft[text]

    def py3langid_top(self, text: str) -> list[tuple[str, float]]:
        return self.py[text]


TEXTS = [
    f"this is english sentence number {word} today" for word in ("one", "two", "three", "four", "five", "six")
]
# (fastText top, py3langid top) per text: en supports 0.9, 0.8, 0.7, 0.6, 0.5 and a py3langid
# rescue (0.4 / 0.7)
TOPS = [
    ([("en", 0.9)], [("en", 0.1)]),
    ([("en", 0.8)], [("en", 0.1)]),
    ([("en", 0.7)], [("en", 0.1)]),
    ([("en", 0.6)], [("en", 0.1)]),
    ([("de", 0.5), ("en", 0.5)], [("en", 0.1)]),
    ([("en", 0.4)], [("en", 0.7)]),
]


def _decide(settings: LidSettings):
    detectors = FakeDetectors(
        {lid_text(t): ft for t, (ft, _) in zip(TEXTS, TOPS, strict=True)},
        {lid_text(t): py for t, (_, py) in zip(TEXTS, TOPS, strict=True)},
    )
    config = CurationConfig(
        text_fields=["text"],
        lid=settings,
        progress=False,
        quality={"ppl": False, "min_tokens": 1},
        dedup={"near": False},
    )  # the six texts are near-duplicates by design
    items = [("<iterable>", line, {"text": text, "lang": "en"}) for line, text in enumerate(TEXTS, start=1)]
    entries = validate_and_identify(items, config, detectors)  # type: ignore[arg-type]
    groups = lid_survivors_by_language(entries)
    return entries, dedup_and_filter_language("en", groups["en"], config)


def test_adaptive_tau_decides_each_record_by_hand():
    entries, result = _decide(LidSettings(threshold="adaptive", adaptive_min_records=3))
    # confidences 0.9 0.8 0.7 0.6 0.5 0.7: median 0.7, sd sqrt(0.1 / 6) = 0.129099 -> tau 0.570901
    applied = result["stats"]["lid_threshold"]
    assert applied["tau"] == 0.5709 and applied["median"] == 0.7 and applied["sd"] == 0.1291
    assert applied["records"] == 6 and applied["rule"].startswith("adaptive")
    decisions = result["decisions"]
    assert [decisions[str(line)]["reason"] for line in range(1, 7)] == [
        None,
        None,
        None,
        None,
        "lid_wrong_language",
        None,
    ]
    assert decisions["5"]["evidence"]["lid"]["text"]["detected"] == "de"
    assert "lid_rescued_by_py3langid" in decisions["6"]["flags"]
    assert "pending" not in json.dumps(decisions)  # the deferred markers never reach the ledger
    # The fixed rule (tau 0.5) keeps all six; an override is fixed even under the adaptive rule.
    _, fixed = _decide(LidSettings(adaptive_min_records=3))
    assert all(d["reason"] is None for d in fixed["decisions"].values())
    assert fixed["stats"]["lid_threshold"] == {"tau": 0.5, "rule": "fixed"}
    _, override = _decide(LidSettings(threshold="adaptive", threshold_per_language={"en": 0.85}))
    assert override["stats"]["lid_threshold"] == {"tau": 0.85, "rule": "per-language override"}
    assert sum(d["reason"] is None for d in override["decisions"].values()) == 1
    # Too few scored records: the fixed tau, and the report says why.
    _, few = _decide(LidSettings(threshold="adaptive", adaptive_min_records=7))
    assert (
        few["stats"]["lid_threshold"]["tau"] == 0.5 and "needs >= 7" in few["stats"]["lid_threshold"]["rule"]
    )


def test_adaptive_threshold_config_validation():
    assert LidSettings(threshold="adaptive").threshold_rule == "adaptive"
    with pytest.raises(ValueError, match="contradicts"):
        LidSettings(threshold="adaptive", threshold_rule="fixed")
    with pytest.raises(ValueError, match="adaptive_min"):
        LidSettings(adaptive_min=0.8, adaptive_max=0.5)


# Dropped by the script gate in the map stage: never part of a language's confidence distribution.
GATE_DROPS = ("lid_script_mismatch", "lid_no_letters")


def test_adaptive_tau_on_real_rows_is_reported_and_recomputable(tmp_path):
    rows = [dict(r, lang=lang) for lang in ("sw", "en") for r in xnli_rows(lang)[:240]]
    config = CurationConfig(
        text_fields=["premise", "hypothesis"],
        label_field="label",
        progress=False,
        lid={"threshold": "adaptive"},
    )
    result = curate(rows, config, tmp_path)
    ledger = [json.loads(line) for line in result.ledger_path.read_text(encoding="utf-8").splitlines()]
    for lang in ("sw", "en"):
        applied = result.report["languages"][lang]["applied"]["lid_threshold"]
        assert applied["rule"].startswith("adaptive") and 0.3 <= applied["tau"] <= 0.9
        confidences = [
            min(f["support"] for f in r["evidence"]["lid"].values() if "support" in f)
            for r in ledger
            if r["lang"] == lang
            and r["reason"] not in GATE_DROPS
            and any("support" in f for f in r["evidence"].get("lid", {}).values())
        ]
        assert len(confidences) == applied["records"]
        assert adaptive_threshold(confidences) == {k: applied[k] for k in ("tau", "median", "sd")}
        lid_dropped = [r for r in ledger if r["lang"] == lang and r["stage"] == "lid"]
        assert all(
            min(f.get("support", 1.0) for f in r["evidence"]["lid"].values()) < applied["tau"]
            for r in lid_dropped
            if r["reason"] in ("lid_low_confidence", "lid_wrong_language")
        )
    assert "lid_threshold" in (tmp_path / "report.md").read_text(encoding="utf-8")
