"""The paper's own configs run end to end: configs/xnli-32shot.yaml with its 7B/30B models swapped for tiny
random Llama and BLOOM decoders, keeping what breaks at scale (bf16 autocast, gradient accumulation, eight
LoRA-GA init batches, every method including the hybrid with unitary sub-layers).
One optimizer step per cell."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.tasks.conftest import make_llama, make_tokenizer

REPO = Path(__file__).resolve().parents[2]


def _bloom(vocab_size: int, seed: int = 0):
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(seed)
    config = BloomConfig(
        hidden_size=64, n_layer=2, n_head=4, vocab_size=vocab_size, bos_token_id=0, eos_token_id=1
    )
    return BloomForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    tokenizer = make_tokenizer()
    folders = {}
    for name, factory in (("tiny-llama", make_llama), ("tiny-bloom", _bloom)):
        folder = tmp_path_factory.mktemp(name)
        factory(len(tokenizer), seed=5).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders


def test_xnli_32shot_config_runs_every_method_on_tiny_llama_and_bloom(tmp_path, tiny_models, shared_data):
    from hyft.config import load_config
    from hyft.experiments.config import RunConfig
    from hyft.experiments.runner import run

    config = load_config(
        REPO / "configs" / "xnli-32shot.yaml",
        RunConfig,
        overrides=[
            f"run.output_dir={tmp_path}",
            "run.seeds=[0]",
            f"data.data_dir={shared_data}",
            "data.k_shots=[8]",
            "data.max_eval_examples=2",
            "data.max_length=64",
            "data.val_examples=10",
            "train.max_steps=1",
            "eval.calibration_examples=10",
        ],
    )
    assert config.train.mixed_precision == "bf16" and config.train.grad_accum == 8  # what the paper runs
    models = [
        entry.model_copy(update={"name": name, "name_or_path": str(folder), "dtype": "float32"})
        for entry, (name, folder) in zip(config.models, tiny_models.items(), strict=True)
    ]
    config = config.model_copy(update={"models": models})
    run_dir = run(config, show_progress=False, write_report=False)
    cells = json.loads((run_dir / "results.json").read_text())["cells"]
    assert len(cells) == 2 * len(config.methods)
    assert {(c["model"], c["method"]) for c in cells} == {(m, x) for m in tiny_models for x in config.methods}
    for cell in cells:
        assert cell["status"] == "done", cell["cell_id"]
        assert cell["footprint"]["steps"] == 1
        history = json.loads((run_dir / "cells" / cell["cell_id"] / "train" / "history.json").read_text())
        losses = [row["loss"] for row in history["steps"]]
        assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0, cell["cell_id"]
        assert set(cell["eval"]["accuracy"]) == set(config.data.languages)
        if cell["method"].startswith("hybrid"):
            assert cell["dynamics"]["lambda"], cell["cell_id"]
    # The hybrid with unitary sub-layers saved its unitary tensors, in fp32, on the attention outputs.
    for model in tiny_models:
        cell = next(c for c in cells if c["model"] == model and c["method"] == "hybrid+unitary")
        state = load_file(str(run_dir / cell["adapter_dir"] / "adapter_model.safetensors"))
        unitary = {k: v for k, v in state.items() if ".unitary." in k}
        assert unitary and all(
            v.dtype.is_floating_point is False or str(v.dtype) == "torch.float32" for v in unitary.values()
        )
        assert any(("o_proj" in k) or ("self_attention.dense" in k) for k in unitary)
