"""Decontamination: drop pool records that copy an evaluation row (reason ``eval_contamination``).

A record is contaminated when, after the governance normaliser (``canonical_text``: NFKC, casefold,
punctuation map, spaces), either

- its text fields joined equal an evaluation row's text fields joined (exact match), or
- one of its fields shares an n-gram of ``ngram`` (13) words with one of the row's fields, as GPT-3's
  and lm-eval's decontamination do.

Units come from ``text.tokens``: word runs, and one unit per Han, Kana or Thai character. A field whose
units are mostly such characters (Chinese, Japanese, Thai: no spaces between words, so 13 "words"
would be 13 characters and match any shared phrase) uses n-grams of ``ngram_dense`` (50) characters
instead, the usual choice for character-level overlap. Each field picks its unit by its own script, so a
Chinese record is compared with a Chinese evaluation row on 50-character windows. Evaluation fields
shorter than n units only match exactly.

The matched evaluation id (the row's own id, else ``file:line``) goes into the ledger evidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hyft.governance.shingles import dense_table
from hyft.governance.text import canonical_text, tokens


def _units(text: str) -> tuple[list[str], bool]:
    """The field's units and whether it is dense (mostly Han/Kana/Thai characters)."""
    units = tokens(canonical_text(text))
    table = dense_table()
    dense = sum(1 for unit in units if table[ord(unit[0])]) * 2 > len(units)
    return units, dense


def _grams(units: list[str], n: int) -> Iterable[str]:
    for start in range(len(units) - n + 1):
        yield " ".join(units[start : start + n])


def exact_key(texts: list[str]) -> str:
    return "\n".join(canonical_text(text) for text in texts)


class EvalIndex:
    """Exact keys and n-grams of the evaluation rows, each mapped to the first row (in order) holding it."""

    def __init__(self, rows: Iterable[tuple[str, list[str]]], ngram: int = 13, ngram_dense: int = 50):
        self.ngram, self.ngram_dense = ngram, ngram_dense
        self.exact: dict[str, str] = {}
        self.grams: dict[str, str] = {}
        self.n_rows = 0
        for eval_id, texts in rows:
            self.n_rows += 1
            self.exact.setdefault(exact_key(texts), eval_id)
            for text in texts:
                units, dense = _units(text)
                n = ngram_dense if dense else ngram
                for gram in _grams(units, n):
                    self.grams.setdefault(f"{n}|{gram}", eval_id)

    def match(self, texts: list[str]) -> dict[str, Any] | None:
        """Evidence of the first match (exact, then field by field), or None when the record is clean."""
        eval_id = self.exact.get(exact_key(texts))
        if eval_id is not None:
            return {"eval_id": eval_id, "match": "exact"}
        for field, text in enumerate(texts):
            units, dense = _units(text)
            n = self.ngram_dense if dense else self.ngram
            for gram in _grams(units, n):
                eval_id = self.grams.get(f"{n}|{gram}")
                if eval_id is not None:
                    kind = f"{n}-char-gram" if dense else f"{n}-word-gram"
                    return {"eval_id": eval_id, "match": kind, "field": field, "span": gram[:200]}
        return None


def read_eval_file(
    path: str | Path, text_fields: list[str], id_field: str | None
) -> list[tuple[str, list[str]]]:
    """(id, texts) per JSONL row: the row's ``id_field`` (else ``id``) or ``file:line``.

    Rows without every text field as a string are skipped (they cannot be compared)."""
    rows = []
    with Path(path).open(encoding="utf-8-sig") as handle:
        for line, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict) or not all(isinstance(row.get(f), str) for f in text_fields):
                continue
            row_id = row.get(id_field or "id")
            eval_id = f"{path}:{line}" if row_id is None else str(row_id)
            rows.append((eval_id, [row[f] for f in text_fields]))
    return rows
