"""The script gate's unit finder: the fast stdlib-``re`` path must cut exactly the units ``UNIT`` defines."""

from __future__ import annotations

import random

import regex
from conftest import flores_lines

from hyft.governance.scripts import UNIT, check_script, letter_units, unit_scripts


def _chars(pattern: str, limit: int, rng: random.Random) -> list[str]:
    """Up to ``limit`` BMP characters and ``limit // 4`` astral ones matching ``pattern``."""
    everything = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    matching = [c for run in regex.findall(pattern + "+", everything) for c in run]
    bmp = [c for c in matching if c <= "\uffff"]
    astral = [c for c in matching if c > "\uffff"]
    return rng.sample(bmp, min(limit, len(bmp))) + rng.sample(astral, min(limit // 4, len(astral)))


def test_fast_units_equal_the_definition_on_adversarial_mixtures():
    rng = random.Random(0)
    # Every boundary the definition has: dense characters absorbing marks (Thai marks are dense too),
    # marks opening a unit, letters of unlisted scripts, astral Han, digits and punctuation between.
    pool = (
        _chars(r"\p{M}", 120, rng)
        + _chars(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}]", 120, rng)
        + _chars(r"\p{L}", 200, rng)
        + list(" .,1-\u00a0\u200d")
    )
    bmp_pool = [c for c in pool if c <= "\uffff"]
    assert any(c > "\uffff" for c in pool) and len(bmp_pool) > 300
    for chosen in (bmp_pool, pool):
        for _ in range(300):
            text = "".join(rng.choices(chosen, k=rng.randint(1, 40)))
            assert letter_units(text) == UNIT.findall(text), ascii(text)


def test_fast_units_equal_the_definition_on_real_text():
    lines = [
        line
        for lang in ("hi", "th", "zh", "ja", "ar", "ko", "ru", "ta", "bn", "vi")
        for line in flores_lines(lang)[:60]
    ]
    assert len(lines) == 600
    assert all(letter_units(line) == UNIT.findall(line) for line in lines)


def test_unit_counts_and_verdicts():
    assert unit_scripts("हम आज रात देर से") == {"Devanagari": 5}
    assert unit_scripts("我爱你 ok") == {"Han": 3, "Latin": 1}
    assert unit_scripts("\U00020000\U00020001 ab") == {"Han": 2, "Latin": 1}  # astral Han goes the slow path
    assert check_script("我爱你 ok", "zh", 0.5) == ("pass", 0.75, 4, "Han")
    assert check_script("今日は", "zh", 0.5).verdict == "mismatch"  # Kana under zh
    assert check_script("Aise mera usse", "hi", 0.5) == (
        "romanised",
        0.0,
        3,
        "Latin",
    )  # issue 16: tagged hi-Latn
    assert check_script("Это русский", "hi", 0.5) == ("mismatch", 0.0, 2, "Cyrillic")
    assert check_script("... 123", "en", 0.5) == ("no_letters", 0.0, 0, None)
    assert check_script("ab cd", "xx-not-listed", 0.5).verdict == "unchecked"
