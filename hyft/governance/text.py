"""Text normal forms, one per purpose, so no stage silently depends on another's normalisation.

- `clean_text`: what validate checks (NFC, C0/C1 controls removed except newline and tab).
- `canonical_text`: the `normalized_duplicate` key (NFKC, casefold, punctuation map, spaces).
- `feature_text`: what SimHash shingles (NFKC, casefold, punctuation and symbols -> space).
- `ppl_text`: what the char LM scores (NFC, casefold, digits -> 0; marks and accents kept).
- `lid_text`: what the detectors see (one line, no URLs, shouting lowercased).
- `count_tokens`: length units (word runs, plus one per Han/Kana/Thai character).

Words are never split with stdlib ``re`` ``\\W``: it cuts Hindi at every matra and virama and
leaves a Chinese sentence as one token (governance.md §4). The ``regex`` package's Unicode
properties keep marks inside words.
"""

from __future__ import annotations

import unicodedata

import regex

_CONTROLS = regex.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))

# Punctuation normalisation (governance.md §7, op P), applied after NFKC, which already maps the
# full-width block. NFKC alone leaves 。、「」《》 untouched, hence the table.
_PUNCTUATION = str.maketrans(
    {
        "。": ".",
        "、": ",",
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "《": '"',
        "》": '"',
        "〈": '"',
        "〉": '"',
        "【": "[",
        "】": "]",
        "〔": "[",
        "〕": "]",
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "«": '"',
        "»": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "‹": "'",
        "›": "'",
        "–": "-",
        "—": "-",
        "―": "-",
        "…": "...",
        "।": ".",
        "॥": ".",
        "،": ",",
        "؛": ";",
        "؟": "?",
        "۔": ".",
    }
)
_PUNCT_OR_SYMBOL = regex.compile(r"[\p{P}\p{S}]+")
_DIGIT = regex.compile(r"\p{Nd}")
_URL_OR_EMAIL = regex.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+")
_UPPER = regex.compile(r"\p{Lu}")
_LOWER_RUN = regex.compile(r"\p{Ll}+")
_ASCII_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_ASCII_LOWER = bytes(range(ord("a"), ord("z") + 1))
_DENSE_TOKEN = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}]"
# One token per Han/Kana/Thai character (with its marks); otherwise a run of letters, marks, digits.
_TOKEN = regex.compile(rf"{_DENSE_TOKEN}\p{{M}}*|[[\p{{L}}\p{{M}}\p{{N}}]--{_DENSE_TOKEN}]+", flags=regex.V1)


def collapse_spaces(text: str) -> str:
    """Each run of Unicode white space (NBSP, U+3000, newlines...) becomes one ASCII space; ends trimmed."""
    return " ".join(text.split())


def clean_text(text: str) -> str:
    """NFC, with C0/C1 control characters removed except newline and tab (validate stage)."""
    return _CONTROLS.sub("", unicodedata.normalize("NFC", text))


def canonical_text(text: str) -> str:
    """The `normalized_duplicate` form: NFKC, casefold, punctuation map, zero-width removed, spaces.

    Digits and diacritics stay: "12+7" vs "13+8" and "si" vs "sí" are different examples.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return collapse_spaces(folded.translate(_PUNCTUATION).translate(_ZERO_WIDTH))


def feature_text(text: str) -> str:
    """The SimHash input: NFKC, casefold, punctuation and symbols -> space, spaces collapsed.

    A text made only of punctuation keeps it (casefolded), so a non-empty text never has an empty
    shingle set (empty sets would all look identical, OpenDCAI/DataFlow#526).
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    stripped = collapse_spaces(_PUNCT_OR_SYMBOL.sub(" ", folded))
    return stripped or collapse_spaces(folded)


def ppl_text(text: str) -> str:
    """The char-LM input: NFC, casefold, every decimal digit -> 0, spaces collapsed; marks kept.

    Unlike cc_net we do not strip accents or matras: that turns Hindi into another string.
    """
    return collapse_spaces(_DIGIT.sub("0", unicodedata.normalize("NFC", text).casefold()))


def lid_text(text: str) -> str:
    """Detector input: one line, URLs and e-mails removed, mostly-uppercase text lowercased.

    All-caps English was labelled `de` (p 0.32) by lid.176 without the lowercasing (§3).
    """
    if "@" in text or "://" in text or "www." in text:  # the pattern is slow; most texts have neither
        text = _URL_OR_EMAIL.sub(" ", text)
    text = collapse_spaces(text)
    if text.isascii():  # C-speed counts for the common case
        raw = text.encode()
        uppercase = len(raw) - len(raw.translate(None, _ASCII_UPPER))
        lowercase = len(raw) - len(raw.translate(None, _ASCII_LOWER))
    else:
        uppercase = len(_UPPER.findall(text))
        lowercase = sum(map(len, _LOWER_RUN.findall(text))) if uppercase else 0
    if uppercase > lowercase:
        text = text.lower()
    return text


def tokens(text: str) -> list[str]:
    """The tokens ``count_tokens`` counts: letter/digit runs, each Han/Kana/Thai character alone."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """Length units: word runs (letters, marks, digits), plus one per Han, Kana or Thai character."""
    return len(_TOKEN.findall(text))
