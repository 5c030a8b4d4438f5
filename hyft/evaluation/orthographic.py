"""Orthographic variants for robustness evaluation (design: shared/design/governance.md §7).

Three operations, each a pure, idempotent function whose output is NFC:
  P ``punctuation``: non-ASCII punctuation → ASCII, character by character (table version ``p1``);
  D ``diacritics``: drop accents on Latin/Greek letters, stress marks and ё's diaeresis on Cyrillic,
    optional vowel marks in Arabic script; Brahmic matras/virama/nukta, Thai marks and CJK are untouched;
  W ``whitespace``: horizontal white-space runs → one space, line-break runs → one "\\n", ends trimmed.

Each example gets exactly one operation, chosen among those that change it (``none`` if none does), so
the variant differs from the clean example by that operation alone. For multi-field examples (NLI premise
and hypothesis) the chosen operation is applied to every text field; it counts as applicable when it
changes at least one field. "Changes" is measured against the NFC form, so a change of normalisation
form alone is never counted as an operation.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

PUNCTUATION_TABLE_VERSION = "p1"

_FULLWIDTH_PUNCTUATION = [
    *range(0xFF01, 0xFF10),
    *range(0xFF1A, 0xFF21),
    *range(0xFF3B, 0xFF41),
    *range(0xFF5B, 0xFF5F),
]
_PUNCTUATION_MAP: dict[int, str] = {cp: chr(cp - 0xFEE0) for cp in _FULLWIDTH_PUNCTUATION}
for _chars, _ascii in [
    ("。", "."),
    ("、", ","),
    ("「」『』《》〈〉", '"'),
    ("【〔", "["),
    ("】〕", "]"),
    ("\u201c\u201d\u201e\u201f\u00ab\u00bb", '"'),  # “ ” „ ‟ « »
    ("\u2018\u2019\u201a\u201b\u2039\u203a", "'"),  # ‘ ’ ‚ ‛ ‹ ›
    ("\u2013\u2014\u2015", "-"),  # – — ―
    ("\u2026", "..."),  # …
    ("\u0964\u0965", "."),  # Devanagari danda, double danda
    ("\u060c", ","),  # Arabic comma
    ("\u061b", ";"),  # Arabic semicolon
    ("\u061f", "?"),  # Arabic question mark
    ("\u06d4", "."),  # Urdu full stop
]:
    for _char in _chars:
        _PUNCTUATION_MAP[ord(_char)] = _ascii

_HORIZONTAL_SPACE = re.compile("[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_LINE_BREAKS = re.compile("[\n\r\v\f\u0085\u2028\u2029]+")
_TRIM = (
    " \t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
    "\n\r\v\f\u0085\u2028\u2029"
)

_CYRILLIC_STRESS = {"\u0300", "\u0301"}
_ARABIC_OPTIONAL_VOWELS = {chr(cp) for cp in range(0x064B, 0x0653)} | {"\u0670"}


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def normalize_punctuation(text: str) -> str:
    """P: map non-ASCII punctuation to ASCII (full-width, CJK, typographic quotes/dashes/ellipsis,
    Devanagari danda, Arabic-script , ; ? .); letters, digits and spaces are untouched, nothing inserted.

    Example: "你好，世界。" → "你好,世界."; "राम घर गया।" → "राम घर गया."
    """
    return _nfc(_nfc(text).translate(_PUNCTUATION_MAP))


def _script(char: str) -> str:
    return unicodedata.name(char, "").split(" ", 1)[0]


def _drop_mark(mark: str, base: str) -> bool:
    script = _script(base)
    if script in {"LATIN", "GREEK"}:
        return True
    if script == "CYRILLIC":
        return mark in _CYRILLIC_STRESS or (mark == "\u0308" and base in "еЕ")
    if script == "ARABIC":
        return mark in _ARABIC_OPTIONAL_VOWELS
    return False


def remove_diacritics(text: str) -> str:
    """D: drop nonspacing marks (Mn) according to the script of the letter they sit on.

    Latin/Greek: every Mn after NFD ("Crème brûlée" → "Creme brulee"). Cyrillic: only U+0300/U+0301 and
    the diaeresis of ё/Ё ("ёжик" → "ежик"; й, ї, ў stay). Arabic script: only U+064B–U+0652 and U+0670;
    hamza/madda letters stay (they are recomposed by the final NFC). Everything else (Devanagari and other
    Brahmic signs, Thai, CJK, Hangul, spacing marks Mc, letters without decomposition such as ø ł đ ß) is
    kept.
    """
    kept: list[str] = []
    base = ""
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.category(char) == "Mn":
            if base and _drop_mark(char, base):
                continue
        else:
            base = char
        kept.append(char)
    return _nfc("".join(kept))


def compact_whitespace(text: str) -> str:
    """W: runs of horizontal white space (space, tab, NBSP, U+2000–200A, U+202F, U+205F, U+3000) → " ";
    runs of line breaks → "\\n"; both ends trimmed. ZWJ/ZWNJ/ZWSP and soft hyphen are not white space and
    stay; a single space between CJK characters stays.
    """
    text = _HORIZONTAL_SPACE.sub(" ", _nfc(text))
    return _LINE_BREAKS.sub("\n", text).strip(_TRIM)


OPERATIONS: dict[str, Callable[[str], str]] = {
    "diacritics": remove_diacritics,
    "punctuation": normalize_punctuation,
    "whitespace": compact_whitespace,
}

Example = str | Sequence[str] | Mapping[str, Any]
AssignmentMode = Literal["applicable", "uniform"]


def _text_fields(example: Example, text_fields: Sequence[str] | None) -> list[str]:
    if isinstance(example, str):
        return [example]
    if isinstance(example, Mapping):
        names = list(text_fields) if text_fields else [k for k in ("premise", "hypothesis") if k in example]
        if not names:
            raise ValueError(
                f"make_variant: say which fields are text (text_fields=…); keys: {sorted(example)}"
            )
        return [example[name] for name in names]
    return list(example)


def applicable_operations(fields: Sequence[str]) -> list[str]:
    """Sorted names of the operations that change at least one field (compared with its NFC form)."""
    return sorted(
        name for name, operation in OPERATIONS.items() if any(operation(f) != _nfc(f) for f in fields)
    )


def _hash_index(seed: int, record_key: str, modulus: int) -> int:
    digest = hashlib.blake2b(f"{seed}\x1f{record_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % modulus


def assign_operation(
    fields: Sequence[str],
    seed: int = 0,
    record_id: str | int | None = None,
    mode: AssignmentMode = "applicable",
) -> str | None:
    """The one operation for an example: A = :func:`applicable_operations`; None if A is empty, else
    sorted(A)[h mod |A|] with h = BLAKE2b-64(f"{seed}\\x1f{record_id}") read big-endian. Without a
    record_id the fields joined by U+001E stand in for it. mode="uniform" picks among all three
    operations (h mod 3), even one that changes nothing (kept for replication).
    """
    key = str(record_id) if record_id is not None else "\x1e".join(fields)
    if mode == "uniform":
        names = sorted(OPERATIONS)
    elif mode == "applicable":
        names = applicable_operations(fields)
    else:
        raise ValueError(f"assign_operation: mode must be 'applicable' or 'uniform', got {mode!r}")
    return names[_hash_index(seed, key, len(names))] if names else None


def make_variant(
    example: Example,
    seed: int = 0,
    *,
    record_id: str | int | None = None,
    text_fields: Sequence[str] | None = None,
    mode: AssignmentMode = "applicable",
) -> tuple[Example, str | None]:
    """Apply exactly one orthographic operation to an example; returns (variant, operation or None).

    example: a string, a sequence of strings, or a mapping (by default its "premise" and "hypothesis"
    fields are text; other keys such as the label are copied unchanged). The operation is applied to
    every text field. With operation None the example is returned as given. Deterministic given
    (seed, record_id, text).
    """
    fields = _text_fields(example, text_fields)
    operation_name = assign_operation(fields, seed=seed, record_id=record_id, mode=mode)
    if operation_name is None:
        return example, None
    operation = OPERATIONS[operation_name]
    if isinstance(example, str):
        return operation(example), operation_name
    if isinstance(example, Mapping):
        names = list(text_fields) if text_fields else [k for k in ("premise", "hypothesis") if k in example]
        return {k: operation(v) if k in names else v for k, v in example.items()}, operation_name
    return type(example)(operation(f) for f in example), operation_name


def characters_changed(original: str, variant: str) -> int:
    """Edit size between two strings: Σ over non-equal difflib opcodes of max(deleted, inserted) chars."""
    matcher = difflib.SequenceMatcher(None, original, variant, autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


def language_robustness(
    clean_correct: Sequence[bool],
    variant_correct: Sequence[bool],
    operations: Sequence[str | None],
    chars_changed: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Per-language robustness row from per-example results (one entry per example, same order).

    Returns n, n per operation (None counted as "none"), n_changed, changed_share, acc_clean,
    acc_variant, drop_all = acc_clean − acc_variant over all examples, drop_changed = the same on changed
    examples only (None when nothing changed), and mean_chars_changed over changed examples if given.
    """
    n = len(operations)
    if not (n == len(clean_correct) == len(variant_correct)) or n == 0:
        raise ValueError("language_robustness: need equal non-empty per-example sequences")
    changed = [i for i, op in enumerate(operations) if op is not None]
    acc_clean = sum(map(bool, clean_correct)) / n
    acc_variant = sum(map(bool, variant_correct)) / n
    row: dict[str, Any] = {
        "n": n,
        "n_by_operation": dict(Counter(op or "none" for op in operations)),
        "n_changed": len(changed),
        "changed_share": len(changed) / n,
        "acc_clean": acc_clean,
        "acc_variant": acc_variant,
        "drop_all": acc_clean - acc_variant,
        "drop_changed": None,
    }
    if changed:
        row["drop_changed"] = sum(bool(clean_correct[i]) - bool(variant_correct[i]) for i in changed) / len(
            changed
        )
        if chars_changed is not None:
            row["mean_chars_changed"] = sum(chars_changed[i] for i in changed) / len(changed)
    return row


def robustness_report(
    acc_clean_by_lang: Mapping[str, float],
    acc_variant_by_lang: Mapping[str, float],
    changed_share_by_lang: Mapping[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-language accuracy drop, drop_ℓ = acc_clean_ℓ − acc_variant_ℓ, plus a "macro" row.

    Each row: clean, variant, drop and (if given) changed_share, the share of examples an operation
    changed; read drops together with it, since a language no operation touches cannot drop. The macro
    row holds unweighted means over languages and ``drop_gap`` = max − min of the per-language drops.
    """
    if set(acc_clean_by_lang) != set(acc_variant_by_lang) or not acc_clean_by_lang:
        raise ValueError("robustness_report: clean and variant accuracies must cover the same languages")
    report: dict[str, dict[str, float]] = {}
    for lang in sorted(acc_clean_by_lang):
        clean, variant = float(acc_clean_by_lang[lang]), float(acc_variant_by_lang[lang])
        report[lang] = {"clean": clean, "variant": variant, "drop": clean - variant}
        if changed_share_by_lang is not None:
            report[lang]["changed_share"] = float(changed_share_by_lang[lang])
    rows = list(report.values())
    macro = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    macro["drop_gap"] = max(r["drop"] for r in rows) - min(r["drop"] for r in rows)
    report["macro"] = macro
    return report
