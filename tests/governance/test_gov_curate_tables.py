"""`hyft curate` on a CSV / Parquet file or a local dataset folder with the user's own column names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

SENTENCES = {
    "en": [
        "The weather was lovely and we walked along the river for hours.",
        "My brother bought a new bicycle because the old one was broken.",
        "She reads the newspaper every morning before she goes to work.",
        "The children played football in the park until it got dark.",
    ],
    "de": [
        "Das Wetter war schön und wir sind stundenlang am Fluss entlang gelaufen.",
        "Mein Bruder hat ein neues Fahrrad gekauft, weil das alte kaputt war.",
        "Sie liest jeden Morgen die Zeitung, bevor sie zur Arbeit geht.",
        "Die Kinder haben im Park Fußball gespielt, bis es dunkel wurde.",
    ],
}
COLUMNS = ["review_id", "utterance", "gold", "locale"]
ROWS = [
    {"review_id": f"r{lang}{i}", "utterance": text, "gold": "pos" if i % 2 else "neg", "locale": lang}
    for lang, texts in SENTENCES.items()
    for i, text in enumerate(texts)
]
# The first English sentence again: an exact duplicate that C1 drops, so the test sees curation happen.
ROWS.append({**ROWS[0], "review_id": "dup"})
FLAGS = [
    "--text-fields",
    "utterance",
    "--lang-field",
    "locale",
    "--label-field",
    "gold",
    "--id-field",
    "review_id",
    "--quiet",
    "--set",
    "curation.quality.ppl=false",
]


def write_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(ROWS)
    return path


def curated(out: Path) -> tuple[list[dict], list[dict]]:
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]
    c1 = [json.loads(line) for line in (out / "c1.jsonl").read_text(encoding="utf-8").splitlines()]
    return ledger, c1


def check(out: Path) -> None:
    ledger, c1 = curated(out)
    assert len(ledger) == len(ROWS)  # every table row is accounted for
    by_id = {entry["id"]: entry for entry in ledger}
    assert set(by_id) == {row["review_id"] for row in ROWS}  # ids from the id column, not line numbers
    # the smallest id of a duplicate group is kept ("dup" < "ren0"): the ids really come from the id column
    assert by_id["ren0"]["reason"] == "exact_duplicate" and by_id["ren0"]["dup_of"] == "dup"
    assert by_id["dup"]["reason"] is None
    assert {entry["lang"] for entry in ledger} == {"en", "de"}  # languages from the locale column
    assert sorted(r["review_id"] for r in c1) == sorted(
        r["review_id"] for r in ROWS if r["review_id"] != "ren0"
    )
    assert all(set(r) >= set(COLUMNS) for r in c1)
    converted = (out / "input.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["review_id"] for line in converted] == [row["review_id"] for row in ROWS]


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_csv_or_parquet_pool_with_its_own_column_names_curates(app, tmp_path, kind):
    import datasets

    source = write_csv(tmp_path / "pool.csv")
    if kind == "parquet":
        datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "pool.parquet"))
        source = tmp_path / "pool.parquet"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["curate", "--input", str(source), "--out", str(out), *FLAGS])
    assert result.exit_code == 0, result.output
    assert f"curated {len(ROWS)} records" in result.output
    check(out)
    again = CliRunner().invoke(app, ["curate", "--input", str(source), "--out", str(out), *FLAGS])
    assert again.exit_code == 0 and "reused the complete curation" in again.output  # same table, same input


def test_a_local_dataset_folder_curates_its_split(app, tmp_path):
    folder = tmp_path / "my-pool"
    folder.mkdir()
    write_csv(folder / "train.csv")
    write_csv(folder / "test.csv").write_text(
        "review_id,utterance,gold,locale\nx,Only one row here.,pos,en\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["curate", "--dataset", str(folder), "--dataset-split", "train", "--out", str(out), *FLAGS]
    )
    assert result.exit_code == 0, result.output
    check(out)


def test_a_wrong_column_fails_with_the_columns_that_exist(app, tmp_path):
    source = write_csv(tmp_path / "pool.csv")
    flags = [flag if flag != "locale" else "language" for flag in FLAGS]
    result = CliRunner().invoke(
        app, ["curate", "--input", str(source), "--out", str(tmp_path / "out"), *flags]
    )
    assert result.exit_code == 2
    # The message data.custom gives in hyft run (hyft.tables.check_columns), with curation's setting name.
    assert (
        f"{source}: curation.lang_field names column 'language', which it does not have; its columns are: "
        "review_id, utterance, gold, locale"
    ) in result.output
    assert not (tmp_path / "out" / "ledger.jsonl").exists()


def test_a_fixed_language_needs_no_language_column(app, tmp_path):
    source = write_csv(tmp_path / "pool.csv")
    flags = [f for f in FLAGS if f not in ("--lang-field", "locale")] + [
        "--default-language",
        "en",
        "--languages",
        "en",
    ]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["curate", "--input", str(source), "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    ledger, _ = curated(out)
    # the table has a locale column, but no lang column: every row is declared en, the German ones fail LID
    assert {e["id"] for e in ledger if e["reason"] is None} == {"dup", "ren1", "ren2", "ren3"}


def test_an_unreachable_hub_name_says_offline_and_how_to_download(app, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))  # nothing cached: the name cannot resolve
    result = CliRunner().invoke(
        app,
        [
            "curate",
            "--dataset",
            "hyft-test/no-such-pool",
            "--dataset-config",
            "en",
            "--out",
            str(tmp_path / "out"),
            *FLAGS,
        ],
    )
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "dataset hyft-test/no-such-pool[en]/train could not be loaded" in text
    assert "offline" in text and "local Hugging Face cache" in text
    assert "datasets.load_dataset('hyft-test/no-such-pool', 'en')" in text


def test_a_hub_dataset_name_curates_offline_from_the_local_cache(app, tmp_path, monkeypatch):
    from tests.hub_cache import cache_hub_dataset

    cache_hub_dataset(monkeypatch, tmp_path / "cache", "hyft-test/tiny-pool", "reviews", {"train": ROWS})
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "curate",
            "--dataset",
            "hyft-test/tiny-pool",
            "--dataset-config",
            "reviews",
            "--out",
            str(out),
            *FLAGS,
        ],
    )
    assert result.exit_code == 0, result.output
    check(out)
