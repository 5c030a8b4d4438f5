"""``data.task: custom``: the user's own CSV/JSONL/Parquet with its own column names, through ``hyft run``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.tasks.conftest import make_llama, make_tokenizer

WORDS = {"pos": ["great", "lovely", "fine", "superb"], "neg": ["awful", "bad", "poor", "dreadful"]}


def write_csv(path: Path, rows: int, start: int = 0, int_labels: bool = False) -> Path:
    """Columns named as a user would: utterance, gold, locale (en and de rows interleaved)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance", "gold", "locale"])
        for i in range(start, start + rows):
            label = "pos" if i % 2 else "neg"
            locale = "de" if (i // 2) % 2 else "en"
            text = f"the film number {i} was {WORDS[label][i % 4]}"
            writer.writerow([text, ["pos", "neg"].index(label) if int_labels else label, locale])
    return path


def custom_section(tmp_path: Path, **changes) -> dict:
    section = {
        "train": str(write_csv(tmp_path / "train.csv", 40)),
        "test": str(write_csv(tmp_path / "test.csv", 24, start=100, int_labels=True)),
        "text_fields": ["utterance"],
        "label_field": "gold",
        "label_names": ["pos", "neg"],
        "language_field": "locale",
    }
    section.update(changes)
    return section


def run_config(tmp_path: Path, model: dict, custom: dict, name: str, methods: dict | None = None) -> dict:
    return {
        "run": {"name": name, "output_dir": str(tmp_path / "runs"), "seeds": [0]},
        "data": {"task": "custom", "custom": custom, "k_shots": [4], "val_examples": 6, "max_length": 32},
        "models": [model],
        "methods": methods or {"lora": {"r": 2, "alpha": 4}},
        "train": {"max_steps": 2, "batch_size": 4, "init_batches": 1},
        "eval": {"batch_size": 16, "calibration_examples": 10, "orthographic": False},
    }


def validate(config: dict):
    from hyft.config import validate_config
    from hyft.experiments.config import RunConfig

    return validate_config(config, RunConfig)


def run_cells(config: dict) -> tuple[Path, list[dict]]:
    from hyft.experiments.runner import run

    run_dir = run(validate(config), show_progress=False, write_report=False)
    return run_dir, json.loads((run_dir / "results.json").read_text())["cells"]


def check_cell(run_dir: Path, cell: dict, test_rows_per_language: int) -> None:
    assert cell["status"] == "done"
    assert set(cell["eval"]["accuracy"]) == {"en", "de"}  # the languages of the locale column
    assert all(0 <= value <= 1 for value in cell["eval"]["accuracy"].values())
    assert all(cell["eval"]["per_language"][lang]["n"] == test_rows_per_language for lang in ("en", "de"))
    assert all(
        len(ids) == 4 and all(i.startswith("custom/train/") for i in ids) for ids in cell["shots"].values()
    )
    samples = [json.loads(line) for line in (run_dir / cell["samples_path"]).read_text().splitlines()]
    assert samples and all(s["id"].startswith("custom/test/") for s in samples)


def test_custom_csv_trains_and_evaluates_an_encoder_through_hyft_run(tmp_path):
    model = {"name": "minilm", "name_or_path": "builtin:minilm", "kind": "encoder"}
    run_dir, cells = run_cells(run_config(tmp_path, model, custom_section(tmp_path), "encoder"))
    assert [c["method"] for c in cells] == ["lora"]
    check_cell(run_dir, cells[0], 12)
    assert cells[0]["footprint"]["steps"] == 2


def test_custom_csv_trains_and_evaluates_a_decoder_with_its_verbalizers(tmp_path):
    from hyft.tasks.registry import get_task
    from hyft.tasks.templates import render_demonstration, template_for

    folder = tmp_path / "tiny-llama"
    tokenizer = make_tokenizer()
    make_llama(len(tokenizer), seed=5).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    custom = custom_section(
        tmp_path, verbalizers={"pos": " yes", "neg": " no"}, prompt="Review: {utterance}\nLiked it?"
    )
    model = {"name": "tiny", "name_or_path": str(folder), "kind": "decoder"}
    run_dir, cells = run_cells(run_config(tmp_path, model, custom, "decoder"))
    check_cell(run_dir, cells[0], 12)
    task = get_task("custom")
    shot = task.load("train", "en")[0]
    assert render_demonstration(task, template_for(task, "en"), shot) == (
        f"Review: {shot['utterance']}\nLiked it?" + (" yes" if shot["label"] == "pos" else " no")
    )


def test_a_wrong_column_name_fails_with_the_columns_that_exist(tmp_path):
    from hyft.config import ConfigError

    model = {"name": "minilm", "name_or_path": "builtin:minilm", "kind": "encoder"}
    with pytest.raises(ConfigError) as failure:
        validate(run_config(tmp_path, model, custom_section(tmp_path, label_field="label"), "wrong"))
    message = str(failure.value)
    assert "'label'" in message and "label_field" in message and "utterance, gold, locale" in message
    assert str(tmp_path / "test.csv") in message  # the file read first names itself


def test_a_label_outside_the_names_fails_with_file_and_line(tmp_path):
    from hyft.config import ConfigError

    path = write_csv(tmp_path / "bad.csv", 6)
    path.write_text(path.read_text().replace("neg", "negative", 1))
    model = {"name": "minilm", "name_or_path": "builtin:minilm", "kind": "encoder"}
    with pytest.raises(ConfigError) as failure:
        validate(run_config(tmp_path, model, custom_section(tmp_path, train=None, test=str(path)), "label"))
    assert f"{path}:2: label 'negative'" in str(failure.value)


def test_jsonl_and_parquet_read_like_csv_with_a_fixed_language(tmp_path):
    import datasets

    from hyft.tasks.custom import CustomTaskSpec, build_custom_task

    source = write_csv(tmp_path / "rows.csv", 8)
    table = datasets.load_dataset("csv", data_files=str(source), split="train")
    table.to_json(str(tmp_path / "rows.jsonl"))
    table.to_parquet(str(tmp_path / "rows.parquet"))
    read = {}
    for name in ("rows.csv", "rows.jsonl", "rows.parquet"):
        spec = CustomTaskSpec(
            test=tmp_path / name,
            text_fields=["utterance"],
            label_field="gold",
            label_names=["pos", "neg"],
            language="sw",
        )
        task = build_custom_task(spec)
        assert task.languages == ("sw",) and task.shot_split is None  # shots come from the test file
        read[name] = [(e["utterance"], e["label"]) for e in task.load("test", "sw")]
    assert len(read["rows.csv"]) == 8 and read["rows.csv"] == read["rows.jsonl"] == read["rows.parquet"]


def csv_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_dataset_by_hub_name_or_local_folder_reads_like_the_files(tmp_path, monkeypatch):
    from hyft.tasks.custom import CustomTaskSpec, build_custom_task
    from tests.hub_cache import cache_hub_dataset

    train = csv_rows(write_csv(tmp_path / "train.csv", 40))
    test = csv_rows(write_csv(tmp_path / "test.csv", 24, start=100))
    folder = tmp_path / "folder"  # a local dataset folder: splits named by file
    folder.mkdir()
    write_csv(folder / "train.csv", 40)
    write_csv(folder / "test.csv", 24, start=100)
    cache_hub_dataset(
        monkeypatch, tmp_path / "cache", "hyft-test/reviews", "en-de", {"train": train, "test": test}
    )
    mapping = {
        "text_fields": ["utterance"],
        "label_field": "gold",
        "label_names": ["pos", "neg"],
        "language_field": "locale",
    }
    read = {}
    for name, source in {
        "files": {"test": tmp_path / "test.csv", "train": tmp_path / "train.csv"},
        "folder": {"dataset": str(folder), "train_split": "train"},
        "hub": {"dataset": "hyft-test/reviews", "dataset_config": "en-de", "train_split": "train"},
    }.items():
        task = build_custom_task(CustomTaskSpec(**source, **mapping))
        assert task.languages == ("de", "en") and task.shot_split == "train"
        read[name] = {
            split: [
                (e["utterance"], e["label"], e["lang"])
                for lang in ("en", "de")
                for e in task.load(split, lang)
            ]
            for split in ("train", "test")
        }
    assert len(read["files"]["train"]) == 40 and len(read["files"]["test"]) == 24
    assert read["files"] == read["folder"] == read["hub"]
    hub = build_custom_task(CustomTaskSpec(dataset="hyft-test/reviews", dataset_config="en-de", **mapping))
    assert hub.load("test", "en")[0]["id"] == "custom/test/1"  # a dataset row's id is its row number


def test_a_dataset_split_or_column_that_is_not_there_is_named(tmp_path, monkeypatch):
    from hyft.config import ConfigError
    from tests.hub_cache import cache_hub_dataset

    rows = csv_rows(write_csv(tmp_path / "rows.csv", 8))
    cache_hub_dataset(monkeypatch, tmp_path / "cache", "hyft-test/reviews", "default", {"test": rows})
    model = {"name": "minilm", "name_or_path": "builtin:minilm", "kind": "encoder"}
    custom = {
        "dataset": "hyft-test/reviews",
        "text_fields": ["utterance"],
        "label_field": "gold",
        "label_names": ["pos", "neg"],
        "language_field": "locale",
    }
    with pytest.raises(ConfigError) as failure:
        validate(run_config(tmp_path, model, {**custom, "train_split": "validation"}, "split"))
    assert (
        "dataset hyft-test/reviews/validation: there is no split 'validation'; its splits are: test"
        in str(failure.value)
    )
    with pytest.raises(ConfigError) as failure:
        validate(run_config(tmp_path, model, {**custom, "text_fields": ["text"]}, "column"))
    assert (
        "hyft-test/reviews/test: data.custom.text_fields names column 'text', which it does not have; its "
        "columns are: utterance, gold, locale"
    ) in str(failure.value)
    with pytest.raises(ConfigError) as failure:
        validate(run_config(tmp_path, model, {**custom, "test": str(tmp_path / "rows.csv")}, "both"))
    assert "give test (a local file, with train optional) or dataset" in str(failure.value)
