"""Task registry and loaders: real files load with the documented shapes; bad files fail with path:line."""

from __future__ import annotations

import json

import pytest

from hyft.cli.errors import UserError
from hyft.tasks import available_tasks, expand_task_names, get_task
from hyft.tasks.loading import DataError, DataSource
from hyft.tasks.registry import UnknownTaskError


def test_registry_lists_every_task_family_and_suggests_close_names():
    assert {"xnli", "flores", "glue", "mnli", "sst2", "qnli", "qqp", "gsm8k", "mtbench", "humaneval"} <= set(
        available_tasks()
    )
    assert len(get_task("xnli").languages) == 15
    with pytest.raises(UnknownTaskError) as error:
        get_task("xnil")
    message = str(error.value)
    assert "did you mean 'xnli'" in message and "flores" in message and "humaneval" in message
    assert isinstance(error.value, UserError)  # the CLI turns it into exit 2


def test_glue_group_adds_qqp_only_with_a_local_file(tmp_path):
    assert expand_task_names(["glue"], DataSource(tmp_path, "local")) == ["mnli", "sst2", "qnli"]
    (tmp_path / "glue").mkdir()
    (tmp_path / "glue" / "qqp.dev.jsonl").write_text('{"question1": "a?", "question2": "b?", "label": 1}\n')
    data = DataSource(tmp_path, "local")
    assert expand_task_names(["glue", "mnli"], data) == ["mnli", "sst2", "qnli", "qqp"]
    (example,) = get_task("qqp").load("dev", "en", data)
    assert example["label"] == "duplicate" and example["question1"] == "a?"


def test_real_files_load_with_documented_counts_and_fields(data_dir):
    data = DataSource(data_dir, "local")
    xnli = get_task("xnli")
    test_hi = xnli.load("test", "hi", data)
    dev_hi = xnli.load("dev", "hi", data)
    assert len(test_hi) == 4008 and len(dev_hi) == 2490
    assert {ex["label"] for ex in dev_hi} == set(xnli.labels)
    assert sum(ex["label"] == "neutral" for ex in dev_hi) == 830
    assert test_hi[0]["id"] == "xnli/test/hi/1" and test_hi[0]["lang"] == "hi"
    sst2 = get_task("sst2").load("dev", "en", data)
    assert len(sst2) == 872 and sum(ex["label"] == "positive" for ex in sst2) == 444
    assert len(get_task("qnli").load("dev", "en", data)) == 5463
    assert len(get_task("mnli").load("dev", "en", data)) == 9815
    gsm8k = get_task("gsm8k").load("test", "en", data)
    assert len(gsm8k) == 1319 and gsm8k[0]["final_answer"] == "18"
    assert len(get_task("humaneval").load("test", "en", data)) == 164
    mtbench = get_task("mtbench").load("test", "en", data)
    assert len(mtbench) == 80 and all(len(ex["turns"]) == 2 for ex in mtbench)
    assert sum(ex["reference_turns"] is not None for ex in mtbench) == 30
    flores = get_task("flores").load("devtest", "en-zh", data)
    assert len(flores) == 812 and flores[0]["src_lang"] == "en" and flores[0]["tgt_lang"] == "zh"
    assert flores[5]["target"] == (data_dir / "flores" / "devtest.zh.txt").read_text("utf-8").splitlines()[5]


def test_data_root_comes_from_hyft_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HYFT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        get_task("gsm8k").load("test", "en")
    assert str(tmp_path / "gsm8k" / "test.jsonl") in str(error.value)


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_missing_file_names_the_path_and_format(tmp_path):
    with pytest.raises(DataError) as error:
        get_task("xnli").load("test", "sw", DataSource(tmp_path, "local"))
    message = str(error.value)
    assert str(tmp_path / "xnli" / "test.sw.jsonl") in message
    assert "file not found" in message and "'premise'" in message and "HYFT_DATA_DIR" in message


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('{"premise": "p", "hypothesis": "h", "label": "neutral"', "not valid JSON"),
        ('{"premise": "p", "label": "neutral"}', "missing field 'hypothesis'"),
        ('{"premise": "p", "hypothesis": "h", "label": 2}', "field 'label' is a int"),
        ('{"premise": "p", "hypothesis": "h", "label": "maybe"}', "label 'maybe' is not an NLI label"),
        ("", "blank line"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, problem):
    good = json.dumps({"premise": "p", "hypothesis": "h", "label": "entailment"})
    path = tmp_path / "xnli" / "dev.de.jsonl"
    _write(path, [good, good, bad_line, good])
    with pytest.raises(DataError) as error:
        get_task("xnli").load("dev", "de", DataSource(tmp_path, "local"))
    message = str(error.value)
    assert message.startswith(f"{path}:3: ") and problem in message and "expected JSONL" in message


def test_flores_files_must_be_aligned_and_non_empty(tmp_path):
    _write(tmp_path / "flores" / "devtest.en.txt", ["one", "two", "three"])
    _write(tmp_path / "flores" / "devtest.de.txt", ["eins", "zwei"])
    data = DataSource(tmp_path, "local")
    with pytest.raises(DataError, match=r"devtest.en.txt has 3 lines but flores/devtest.de.txt has 2"):
        get_task("flores").load("devtest", "en-de", data)
    _write(tmp_path / "flores" / "devtest.de.txt", ["eins", "", "drei"])
    with pytest.raises(DataError, match=r"devtest.de.txt:2: empty line"):
        get_task("flores").load("devtest", "en-de", data)


def test_unknown_language_and_split_are_refused_before_reading_any_file(tmp_path):
    data = DataSource(tmp_path / "no-data", "local")
    with pytest.raises(DataError, match="no language 'ja'"):
        get_task("xnli").load("test", "ja", data)
    with pytest.raises(DataError, match="splits"):
        get_task("xnli").load("train", "en", data)
    with pytest.raises(DataError, match="directions like 'en-de'"):
        get_task("flores").load("devtest", "de", data)


def test_hub_source_offline_fails_with_dataset_and_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        get_task("xnli").load("test", "en", DataSource(tmp_path, "hub"))
    message = str(error.value)
    assert "'facebook/xnli' (config 'en')" in message
    assert str(tmp_path / "xnli" / "test.en.jsonl") in message
