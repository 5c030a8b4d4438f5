"""Write the evidence study's noisy XNLI pool (Table V on real rows; docs/evidence/minilm.md).

    python evidence/xnli_planted_pool.py            # → evidence/pools/xnli-planted.jsonl (git-ignored)
    hyft run configs/evidence-minilm-curation.yaml  # trains at C2 and, for the ablation, at C0

Per language (en, es, sw: Latin script; zh, hi: scripts MiniLM hardly reads) the pool holds 450 clean
XNLI dev rows (every premise group in turn, from the whole file) and planted noise, seeded:

- ``foreign``: 60 rows of other XNLI languages declared as this one (their own labels);
- ``duplicate``: 40 copies of clean rows, half exact, half with whitespace / Unicode-normalisation edits;
- ``garbage``: 150 clean rows whose premise and hypothesis had their characters shuffled (labels kept).

That is 250 noisy rows in 700 (36 %). Each row's category is written to a side table
(``xnli-planted.categories.json``, id → category), never into the record, so the curation cannot see it.
Reads ``../shared/data/xnli`` (or ``--data-dir``); nothing of it is committed.
"""

from __future__ import annotations

import argparse
import json
import random
import unicodedata
from pathlib import Path

LANGS = ("en", "es", "sw", "zh", "hi")
DONORS = {"en": "fr", "es": "de", "sw": "tr", "zh": "ru", "hi": "ar"}  # another script for zh/hi, too
CLEAN, FOREIGN, DUPLICATES, GARBAGE = 450, 60, 40, 150


def _rows(data_dir: Path, lang: str) -> list[dict]:
    path = data_dir / "xnli" / f"dev.{lang}.jsonl"
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _normalisation_variant(text: str, which: int) -> str:
    variants = (
        lambda t: "  " + t.replace(" ", "\u00a0") + " ",  # NBSP and padding
        lambda t: unicodedata.normalize("NFD", t),
    )
    return variants[which % 2](text)


def _shuffled(text: str, rng: random.Random) -> str:
    characters = list(text)
    rng.shuffle(characters)
    return "".join(characters)


def build(data_dir: Path, seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    """(pool records with fields premise, hypothesis, label, lang, id; category per id)."""
    rng = random.Random(seed)
    records: list[dict] = []
    categories: dict[str, str] = {}

    def add(row: dict, lang: str, category: str) -> None:
        record_id = f"{lang}-{len(records):05d}"
        records.append(
            {
                "id": record_id,
                "premise": row["premise"],
                "hypothesis": row["hypothesis"],
                "label": row["label"],
                "lang": lang,
            }
        )
        categories[record_id] = category

    for lang in LANGS:
        rows = _rows(data_dir, lang)
        # Every stride-th row, spread over the whole file (its first rows are unrepresentative).
        stride = len(rows) // CLEAN
        clean = [rows[i] for i in range(0, stride * CLEAN, stride)][:CLEAN]
        for row in clean:
            add(row, lang, "clean")
        donor = _rows(data_dir, DONORS[lang])
        for index in rng.sample(range(len(donor)), FOREIGN):
            add(donor[index], lang, "foreign")
        for number, index in enumerate(rng.sample(range(CLEAN), DUPLICATES)):
            row = dict(clean[index])
            if number % 2:
                row["premise"] = _normalisation_variant(row["premise"], number // 2)
                row["hypothesis"] = _normalisation_variant(row["hypothesis"], number // 2)
            add(row, lang, "duplicate")
        for index in rng.sample(range(CLEAN), GARBAGE):
            row = dict(clean[index])
            row["premise"], row["hypothesis"] = (
                _shuffled(row["premise"], rng),
                _shuffled(row["hypothesis"], rng),
            )
            add(row, lang, "garbage")
    order = list(range(len(records)))
    rng.shuffle(order)
    return [records[i] for i in order], categories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("evidence/pools/xnli-planted.jsonl"))
    args = parser.parse_args()
    records, categories = build(args.data_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    side = args.out.with_suffix(".categories.json")
    side.write_text(json.dumps(categories, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(records)} rows ({sum(c != 'clean' for c in categories.values())} planted)")


if __name__ == "__main__":
    main()
