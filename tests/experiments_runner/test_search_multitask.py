"""hyft run with a ``search`` section and with several tasks (issue 13): a tiny random BERT, real GLUE rows.

The search test replaces the trial scorer by one whose best grid point is known, and checks that the
search picks it, that the cells train with it, and that no row the search scored is ever a test row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hyft.config import ConfigError


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer (trains a step in milliseconds)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hyft.models import resolve_model_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:minilm"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _config(tmp_path: Path, model_dir: Path, data_dir: Path, name: str, **sections) -> dict:
    config = {
        "run": {"name": name, "output_dir": str(tmp_path), "seeds": [0]},
        "data": {
            "task": "sst2",
            "k_shots": [8],
            "data_dir": str(data_dir),
            "max_eval_examples": 12,
            "val_examples": 10,
            "max_length": 48,
        },
        "models": [{"name": "tiny", "name_or_path": str(model_dir), "kind": "encoder"}],
        "methods": {"lora": {"r": 2, "alpha": 4}, "lora_ga": {"r": 2, "alpha": 4}},
        "train": {"max_steps": 2, "batch_size": 8, "init_batches": 1},
        "eval": {"batch_size": 32, "calibration_examples": 10, "orthographic": False},
    }
    for section, changes in sections.items():
        if changes is None:
            config.pop(section, None)
        else:
            config.setdefault(section, {}).update(changes)
    return config


def _load(config: dict):
    from hyft.config import validate_config
    from hyft.experiments.config import RunConfig

    return validate_config(config, RunConfig)


def _evaluated_ids(run_dir: Path, cell: dict) -> set[str]:
    return {json.loads(line)["id"] for line in (run_dir / cell["samples_path"]).read_text().splitlines()}


def test_grid_fields_are_searched_only_by_the_methods_they_move(tmp_path, tiny_encoder, shared_data):
    from hyft.experiments.search import choose, grid_points, relevant_fields

    config = _load(
        _config(
            tmp_path,
            tiny_encoder,
            shared_data,
            "fields",
            methods={"boft": {"boft_block_size": 8}, "hybrid": {"r": 2, "boft_block_size": 8}, "full": {}},
            search={"grid": {"lr": [3.0e-4, 1.0e-3, 3.0e-3], "lr_lora_ga": [1.0e-5, 3.0e-5]}},
        )
    )
    assert relevant_fields(config, "lora") == ["lr"]
    assert relevant_fields(config, "lora_ga") == ["lr_lora_ga"]  # lr no longer moves its branch
    assert relevant_fields(config, "boft") == ["lr"]
    assert relevant_fields(config, "hybrid") == ["lr", "lr_lora_ga"]
    assert len(grid_points(config, "hybrid")) == 6 and len(grid_points(config, "boft")) == 3
    # Grid order: the first field varies slowest.
    assert grid_points(config, "hybrid")[:2] == [
        {"lr": 3.0e-4, "lr_lora_ga": 1.0e-5},
        {"lr": 3.0e-4, "lr_lora_ga": 3.0e-5},
    ]
    # An explicit lr_lora in the train section means lr no longer moves plain LoRA either.
    # Ties go to the first point in grid order, for either direction of the metric.
    trials = [
        {"name": "a", "score": 0.5},
        {"name": "b", "score": 0.7},
        {"name": "c", "score": 0.7},
        {"name": "d", "score": 0.5},
    ]
    assert choose(trials, higher_is_better=True)["name"] == "b"
    assert choose(trials, higher_is_better=False)["name"] == "a"
    pinned = _load(
        _config(
            tmp_path,
            tiny_encoder,
            shared_data,
            "pinned",
            train={"lr_lora": 5.0e-4},
            search={"grid": {"lr": [1.0e-3, 3.0e-3], "weight_decay": [0.0, 0.1]}},
        )
    )
    assert relevant_fields(pinned, "lora") == ["weight_decay"]


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"grid": {"lr_lora_gaa": [1.0e-5]}}, "did you mean 'lr_lora_ga'"),
        ({"grid": {"learning_rate": [1.0e-5]}}, "valid fields: batch_size"),
        ({"grid": {"lr": [-1.0]}}, "grid.lr"),
        ({"grid": {"seed": [1, 2]}}, "cannot be searched"),
        ({"grid": {"lr": [1.0e-3]}, "methods": ["boft"]}, "search.methods"),
    ],
)
def test_invalid_search_sections_are_rejected(tmp_path, tiny_encoder, shared_data, search, message):
    with pytest.raises(ConfigError, match=message):
        _load(_config(tmp_path, tiny_encoder, shared_data, "bad", search=search))


def test_search_picks_the_known_best_point_and_the_cells_train_with_it(
    tmp_path, tiny_encoder, shared_data, monkeypatch
):
    from hyft.experiments import search as search_module
    from hyft.experiments.runner import run

    seen: list[dict] = []

    def known_best(trial) -> float:
        """Best lr = 1e-3 (for LoRA), best lr_lora_ga = 3e-5; a tie between the two worst lr values."""
        seen.append(
            {
                "train": trial.train_config.model_dump(),
                "ids": {lang: [row["id"] for row in rows] for lang, rows in trial.validation.items()},
            }
        )
        if trial.train_config.lr_lora_ga is not None:
            return 1.0 if trial.train_config.lr_lora_ga == 3.0e-5 else 0.5
        return -abs(math.log10(trial.train_config.lr) + 3.0)

    monkeypatch.setattr(search_module, "score_trial", known_best)
    config = _load(
        _config(
            tmp_path,
            tiny_encoder,
            shared_data,
            "search",
            search={"grid": {"lr": [1.0e-4, 1.0e-3, 1.0e-2], "lr_lora_ga": [1.0e-5, 3.0e-5]}},
        )
    )
    run_dir = run(config, show_progress=False, write_report=False)
    results = json.loads((run_dir / "results.json").read_text())
    searches = {s["method"]: s for s in results["search"]["searches"]}
    assert searches["lora"]["chosen"] == {"lr": 1.0e-3}
    assert searches["lora"]["skipped_fields"] == ["lr_lora_ga"] and len(searches["lora"]["trials"]) == 3
    assert searches["lora_ga"]["chosen"] == {"lr_lora_ga": 3.0e-5} and len(searches["lora_ga"]["trials"]) == 2
    assert [t["score"] for t in searches["lora"]["trials"]] == [-1.0, 0.0, -1.0]
    assert results["search"]["k_shot"] == 8 and results["search"]["seeds"] == [0]
    assert len(seen) == 5  # 3 LoRA points + 2 LoRA-GA points, nothing twice
    cells = {c["method"]: c for c in results["cells"]}
    assert cells["lora"]["train"]["lr"] == 1.0e-3 and cells["lora"]["search_choice"] == {"lr": 1.0e-3}
    assert cells["lora_ga"]["train"]["lr_lora_ga"] == 3.0e-5
    assert cells["lora_ga"]["train"]["lr"] == config.train.lr  # lr_lora_ga only, lr untouched
    trial = run_dir / "search" / "tiny__sst2__lora" / "lr=0.001" / "seed0" / "result.json"
    assert trial.is_file() and (run_dir / "search" / "tiny__sst2__lora" / "search.json").is_file()
    # Never selected on test rows: the scored rows are validation rows of the shot pool, and neither they
    # nor the search's shots are evaluated by any cell (SST-2 has no separate shot split).
    scored = {i for entry in seen for ids in entry["ids"].values() for i in ids}
    recorded = json.loads(trial.read_text())
    assert scored and set(recorded["scored_ids"]["en"]) <= scored
    assert not set(recorded["shot_ids"]["en"]) & scored
    for cell in results["cells"]:
        evaluated = _evaluated_ids(run_dir, cell)
        assert len(evaluated) == 12
        assert not evaluated & scored and not evaluated & set(recorded["shot_ids"]["en"])
    # Resumable: a second run recomputes no trial and gives the same results.
    stamp = trial.stat().st_mtime_ns
    seen.clear()
    run(config, show_progress=False, write_report=False)
    assert trial.stat().st_mtime_ns == stamp and not seen
    again = json.loads((run_dir / "results.json").read_text())
    assert again["search"] == results["search"]


def test_several_tasks_and_a_group_in_one_run(tmp_path, tiny_encoder, shared_data):
    from hyft.experiments.runner import run

    raw = _config(
        tmp_path,
        tiny_encoder,
        shared_data,
        "multi",
        data={
            "task": None,
            "tasks": ["demo-nli", "glue"],
            "languages": ["en", "zh"],
            "k_shots": [0, 6],
            "max_eval_examples": 4,
        },
        search={"grid": {"lr": [1.0e-3, 1.0e-2]}},
    )
    raw["methods"] = {"lora": {"r": 2, "alpha": 4}}
    config = _load(raw)
    run_dir = run(config, show_progress=False, write_report=False)
    results = json.loads((run_dir / "results.json").read_text())
    glue = ["mnli", "sst2", "qnli"] + (["qqp"] if (shared_data / "glue" / "qqp.dev.jsonl").is_file() else [])
    assert results["run"]["tasks"] == ["demo-nli", *glue]
    assert results["run"]["task_groups"] == {"glue": glue}
    assert results["run"]["primary_task"] == "demo-nli"
    cells = results["cells"]
    assert sorted({c["task"] for c in cells}) == sorted(["demo-nli", *glue])
    assert len(cells) == 2 * (1 + len(glue))  # zero-shot + lora per task
    for cell in cells:
        assert cell["status"] == "done" and cell["cell_id"].split("__")[2] == cell["task"]
        expected = {"en", "zh"} if cell["task"] == "demo-nli" else {"en"}  # GLUE is English only
        assert set(cell["eval"]["accuracy"]) == expected
    # The search ran per task with the real validation-accuracy scorer.
    searches = results["search"]["searches"]
    assert sorted(s["task"] for s in searches) == sorted(["demo-nli", *glue])
    for entry in searches:
        assert entry["metric"] == "accuracy" and all(0.0 <= t["score"] <= 1.0 for t in entry["trials"])
        assert entry["chosen"]["lr"] in (1.0e-3, 1.0e-2)
        cell = next(c for c in cells if c["task"] == entry["task"] and c["method"] == "lora")
        assert cell["train"]["lr"] == entry["chosen"]["lr"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    paths = [f["path"] for f in manifest["data_files"]]
    assert any("nli.test.zh.jsonl" in p for p in paths) and any("sst2.dev.jsonl" in p for p in paths)
    assert any("mnli.dev_matched.jsonl" in p for p in paths)


def test_task_and_tasks_settings(tmp_path, tiny_encoder, shared_data):
    config = _load(_config(tmp_path, tiny_encoder, shared_data, "glue", data={"task": "glue"}))
    assert config.tasks()[:3] == ["mnli", "sst2", "qnli"] and list(config.task_groups()) == ["glue"]
    from hyft.experiments.cells import plan_cells

    assert {c.task for c in plan_cells(config)} == set(config.tasks())
    with pytest.raises(ConfigError, match="exactly one of data.task"):
        _load(_config(tmp_path, tiny_encoder, shared_data, "both", data={"tasks": ["xnli"]}))
    with pytest.raises(ConfigError, match="exactly one of data.task"):
        _load(_config(tmp_path, tiny_encoder, shared_data, "none", data={"task": None}))
    with pytest.raises(ConfigError, match="did you mean 'glue'"):
        _load(
            _config(
                tmp_path, tiny_encoder, shared_data, "typo", data={"task": None, "tasks": ["xnli", "glu"]}
            )
        )
    with pytest.raises(ConfigError, match="one task"):
        _load(
            _config(
                tmp_path,
                tiny_encoder,
                shared_data,
                "curated",
                data={"task": None, "tasks": ["glue"]},
                curation={
                    "pool": "builtin:demo-pool",
                    "settings": {
                        "text_fields": ["premise", "hypothesis"],
                        "lang_field": "lang",
                        "label_field": "label",
                        "id_field": "id",
                        "progress": False,
                    },
                },
            )
        )


def test_manifest_files_of_the_demo_topic_run_are_its_shipped_splits_and_pool():
    from hyft.config import load_config
    from hyft.data import demo_path
    from hyft.experiments.config import RunConfig
    from hyft.experiments.runner import data_files_used

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml", RunConfig)
    files = data_files_used(config)
    expected = {
        demo_path(f"topic.{split}.{lang}.jsonl")
        for split in ("dev", "test")
        for lang in config.data.languages
    }
    assert expected <= set(files)
    assert demo_path("pool.jsonl") in files
    assert len(files) == len(expected) + 1
