"""Build a noisy pool from real XNLI rows with known planted noise, for the acceptance test.

Every planted row records its category in a side table (never in the record itself), so the test
can measure recall and precision per category from the ledger alone.
"""

from __future__ import annotations

import json
import random
import unicodedata

import regex
from conftest import flores_lines, xnli_rows

LANGS = ["en", "zh", "hi", "es", "sw"]
# Donor languages for rows declared under a wrong language: same-script donors first, where any exist.
DONORS = {
    "en": ["fr", "de", "es", "sw", "vi"],
    "es": ["fr", "de", "en", "tr", "sw"],
    "sw": ["en", "fr", "de", "tr", "vi"],
    "zh": ["ja", "ru", "th", "ar", "hi"],
    "hi": ["ur", "ar", "en", "ru", "th"],
}
GROUP_STRIDE = 10  # every 10th premise group (3 rows each) -> 249 clean rows per language
_WORD = regex.compile(r"\p{L}[\p{L}\p{M}]{3,}")


def clean_rows(lang: str) -> list[dict]:
    """Whole premise groups spread over the file (the first rows are unrepresentative: 19% of the
    first 300 Hindi rows are romanised vs 8% overall)."""
    rows = xnli_rows(lang)
    groups = [rows[i : i + 3] for i in range(0, len(rows), 3)]
    return [dict(r, lang=lang) for g in groups[::GROUP_STRIDE] for r in g]


def _foreign(lang: str, rng: random.Random, per_donor: int = 4) -> list[dict]:
    planted = []
    for donor in DONORS[lang]:
        if donor == "ja":  # XNLI has no Japanese: FLORES sentences as premise and hypothesis
            lines = flores_lines("ja")
            picks = rng.sample(range(len(lines) - 1), per_donor)
            planted += [
                {"premise": lines[k], "hypothesis": lines[k + 1], "label": "neutral", "lang": lang}
                for k in picks
            ]
            continue
        rows = xnli_rows(donor)
        planted += [dict(rows[k], lang=lang) for k in rng.sample(range(1, len(rows), 3), per_donor)]
    return planted


def _replace_one_word(text: str, vocabulary: list[str], rng: random.Random, lang: str) -> str:
    if lang == "zh":  # no spaces: replace one Han character
        positions = [k for k, c in enumerate(text) if regex.match(r"\p{Han}", c)]
        k = rng.choice(positions)
        return text[:k] + rng.choice([c for c in "猫狗鸟鱼树花山河" if c != text[k]]) + text[k + 1 :]
    words = list(_WORD.finditer(text))
    match = rng.choice(words)
    replacement = rng.choice([w for w in vocabulary if w != match.group()])
    return text[: match.start()] + replacement + text[match.end() :]


def _shuffled(text: str, rng: random.Random) -> str:
    chars = list(text)
    rng.shuffle(chars)
    return "".join(chars)


def _first_word(text: str, lang: str) -> str:
    return text.strip()[:1] if lang == "zh" else text.split()[0]


def build_pool(seed: int = 0) -> tuple[list[bytes], dict[int, str], dict[int, int]]:
    """Return (lines as bytes, category per 1-based line, partner line for planted duplicates).

    Categories: clean, foreign, near, exact, normalized, shuffled, truncated, malformed.
    """
    rng = random.Random(seed)
    items: list[tuple[str, object, int | None]] = []  # (category, record or raw bytes, index of original)
    for lang in LANGS:
        clean = clean_rows(lang)
        base = len(items)
        items += [("clean", row, None) for row in clean]
        items += [("foreign", row, None) for row in _foreign(lang, rng)]
        vocabulary = sorted({m.group() for r in clean for m in _WORD.finditer(r["premise"])})
        # >= 60 characters (governance.md §10.1); Chinese packs ~3x more per character, so >= 25 there.
        long_premise = [k for k, r in enumerate(clean) if len(r["premise"]) >= (25 if lang == "zh" else 60)]
        for k in rng.sample(long_premise, 20):
            row = dict(clean[k], premise=_replace_one_word(clean[k]["premise"], vocabulary, rng, lang))
            items.append(("near", row, base + k))
        for k in rng.sample(range(len(clean)), 15):
            items.append(("exact", dict(clean[k]), base + k))
        variants = [
            lambda t: "  " + t.replace(" ", "\u00a0 ") + " ",  # NBSP and extra spaces
            lambda t: unicodedata.normalize("NFD", t),
            lambda t: t.upper() if t.upper() != t else t + "\u200b",
            lambda t: t.replace(",", "，").replace(".", "。"),
            lambda t: t.replace('"', "“"),
        ]
        for variant, k in zip(variants, rng.sample(range(len(clean)), 5), strict=True):
            row = dict(
                clean[k], premise=variant(clean[k]["premise"]), hypothesis=variant(clean[k]["hypothesis"])
            )
            items.append(("normalized", row, base + k))
        for k in rng.sample(range(len(clean)), 5):
            row = dict(
                clean[k],
                premise=_shuffled(clean[k]["premise"], rng),
                hypothesis=_shuffled(clean[k]["hypothesis"], rng),
            )
            items.append(("shuffled", row, None))
        for k in rng.sample(range(len(clean)), 5):
            row = dict(
                clean[k],
                premise=_first_word(clean[k]["premise"], lang),
                hypothesis=_first_word(clean[k]["hypothesis"], lang),
            )
            items.append(("truncated", row, None))
        malformed = [
            b"",
            b'{"premise": "unterminated',
            b"[1, 2, 3]",
            b'{"premise": "caf\xe9", "hypothesis": "x y z", "lang": "en"}',
            json.dumps(
                {"premise": "", "hypothesis": "Something here.", "label": "neutral", "lang": lang}
            ).encode(),
            json.dumps({"premise": "Only a premise here.", "label": "neutral", "lang": lang}).encode(),
            json.dumps(
                {"premise": "Declared as an unknown code.", "hypothesis": "yes", "lang": "xx"}
            ).encode(),
            json.dumps({"premise": 42, "hypothesis": "A number premise.", "lang": lang}).encode(),
        ]
        items += [("malformed", raw, None) for raw in malformed]
    order = list(range(len(items)))
    rng.shuffle(order)
    line_of = {index: position + 1 for position, index in enumerate(order)}
    lines, category, partner = [], {}, {}
    for position, index in enumerate(order, start=1):
        kind, payload, original = items[index]
        lines.append(
            payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        )
        category[position] = kind
        if original is not None:
            partner[position] = line_of[original]
    return lines, category, partner


# --- Garbage at a known share, for the quality-threshold measurement (docs/governance-thresholds.md) ---
GARBAGE_KINDS = ("shuffled", "random", "repeated")
DENSE_LANGS = ("zh", "ja", "th")


def clean_pairs(lang: str, count: int = 800) -> list[list[str]]:
    """Distinct (premise, hypothesis) pairs of XNLI dev, every second one, in the declared script only
    (romanised rows belong to another language-script group, not to this pool's clean rows)."""
    from hyft.governance.scripts import check_script

    seen: dict[tuple[str, str], None] = {}
    for row in xnli_rows(lang):
        seen.setdefault((row["premise"], row["hypothesis"]), None)
    pairs = [list(p) for p in list(seen)[::2]]
    return [
        p
        for p in pairs
        if all(check_script(t, lang, 0.5).verdict not in ("mismatch", "romanised") for t in p)
    ][:count]


def _random_string(text: str, rng: random.Random, alphabet: list[str], dense: bool) -> str:
    if dense:
        return "".join(rng.choice(alphabet) for _ in text)
    words: list[str] = []
    while len(" ".join(words)) < len(text):
        words.append("".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9))))
    return " ".join(words)


def _repeated(text: str, rng: random.Random, dense: bool) -> str:
    if dense:
        unit = rng.choice([c for c in text if not c.isspace()]) * rng.randint(1, 3)
        return unit * rng.randint(5, 15)
    return " ".join([rng.choice(text.split())] * rng.randint(6, 20))


def plant_garbage(
    clean: list[list[str]], share: float, lang: str, seed: int = 1
) -> tuple[list[list[str]], list[str]]:
    """clean + garbage rows making up ``share`` of the pool; returns (pool, kind per row: "clean" or a
    GARBAGE_KINDS entry, in rotation). Garbage fields: characters shuffled; random strings of the pool's own
    letters (same script, same length); one of the field's tokens (a character for dense scripts) repeated."""
    rng = random.Random(seed)
    dense = lang in DENSE_LANGS
    alphabet = sorted({c for pair in clean for t in pair for c in t if c.isalpha()})
    count = int(round(share * len(clean) / (1 - share)))
    pool, kinds = [list(p) for p in clean], ["clean"] * len(clean)
    for i, pair in enumerate(rng.choices(clean, k=count)):
        kind = GARBAGE_KINDS[i % 3]
        if kind == "shuffled":
            pool.append([_shuffled(t, rng) for t in pair])
        elif kind == "random":
            pool.append([_random_string(t, rng, alphabet, dense) for t in pair])
        else:
            pool.append([_repeated(t, rng, dense) for t in pair])
        kinds.append(kind)
    return pool, kinds
