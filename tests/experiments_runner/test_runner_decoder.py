"""The runner with a causal LM: XNLI by verbaliser likelihood, FLORES by generation (shots from devtest)."""

from __future__ import annotations

import json

import pytest

from tests.tasks.conftest import make_llama, make_tokenizer


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = make_tokenizer()
    make_llama(len(tokenizer), seed=5).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _config(tmp_path, model_dir, data_dir, task, languages):
    from hyft.config import validate_config
    from hyft.experiments.config import RunConfig

    return validate_config(
        {
            "run": {"name": task, "output_dir": str(tmp_path), "seeds": [0]},
            "data": {
                "task": task,
                "languages": languages,
                "k_shots": [4],
                "data_dir": str(data_dir),
                "max_eval_examples": 3,
                "val_examples": 10,
                "max_length": 96,
            },
            "models": [{"name": "tiny", "name_or_path": str(model_dir), "kind": "decoder"}],
            "methods": {
                "lora_ga": {"r": 2, "alpha": 4},
                "hybrid": {"r": 2, "alpha": 4, "boft_block_size": 4, "boft_n_butterfly_factor": 2},
            },
            "train": {"max_steps": 2, "batch_size": 4, "init_batches": 1},
            "eval": {"batch_size": 8, "calibration_examples": 10, "orthographic": False, "max_new_tokens": 8},
        },
        RunConfig,
    )


def test_decoder_classification_and_translation_cells(tmp_path, tiny_decoder, shared_data):
    from hyft.experiments.runner import run

    xnli = run(
        _config(tmp_path, tiny_decoder, shared_data, "xnli", ["en", "de"]),
        show_progress=False,
        write_report=False,
    )
    cells = json.loads((xnli / "results.json").read_text())["cells"]
    assert {c["method"] for c in cells} == {"lora_ga", "hybrid"}
    for cell in cells:
        assert set(cell["eval"]["accuracy"]) == {"en", "de"}
        assert cell["eval"]["per_language"]["en"]["n"] == 3
        assert "avg_ece_temperature_scaled" in cell["eval"]
    flores = run(
        _config(tmp_path, tiny_decoder, shared_data, "flores", ["en", "de"]),
        show_progress=False,
        write_report=False,
    )
    cell = json.loads((flores / "results.json").read_text())["cells"][0]
    assert set(cell["eval"]["bleu"]) == {"en-de", "de-en"}
    trained = set(cell["shots"]["en-de"])
    evaluated = [json.loads(line) for line in (flores / cell["samples_path"]).read_text().splitlines()]
    assert evaluated and not trained & {s["id"] for s in evaluated}  # shots never evaluated
