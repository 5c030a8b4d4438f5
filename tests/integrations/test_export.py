"""``hyft export --merged``: a plain transformers folder that from_pretrained loads offline, with the
adapter's logits; full fine-tuning saves the same kind of folder (and old full folders still load)."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

import hyft
from hyft.cli import export
from tests.conftest import minilm_classifier, minilm_path, model_inputs
from tests.tasks.conftest import make_llama, make_tokenizer


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # keeps `export` a sub-command, as in the real `hyft` app
        pass

    export.register(app)
    return app


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    tokenizer = make_tokenizer()
    make_llama(len(tokenizer), seed=5).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _hybrid():
    return hyft.AdapterConfig(
        method="hybrid", r=4, alpha=8, boft_block_size=8, boft_n_butterfly_factor=2, lambda_warmup_steps=0
    )


def _train(model, inputs, steps=3, lr=0.05):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(**inputs).loss.backward()
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _llama_inputs(vocab):
    ids = torch.randint(3, vocab, (2, 12), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def _export(app, *args):
    result = CliRunner().invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_export_merged_hybrid_llama_loads_with_from_pretrained_and_reproduces_the_logits(
    app, llama_dir, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(llama_dir)
    inputs = _llama_inputs(base.config.vocab_size)
    model = hyft.wrap(base, _hybrid(), init_batches=[inputs])
    _train(model, inputs)
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        adapter = model(**forward).logits
        assert (
            adapter - AutoModelForCausalLM.from_pretrained(llama_dir)(**forward).logits
        ).abs().max() > 1e-3
    model.save_pretrained(tmp_path / "adapter")

    _export(app, tmp_path / "adapter", "--base", llama_dir, "--out", tmp_path / "merged", "--merged")
    files = {p.name for p in (tmp_path / "merged").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert (
        not {"adapter_config.json", "hyft_config.json"} & files
    )  # nothing for transformers to take for PEFT
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert type(loaded).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.allclose(loaded(**forward).logits, adapter, atol=1e-4, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert (
        tokenizer("Der Hund schläft.").input_ids
        == AutoTokenizer.from_pretrained(llama_dir)("Der Hund schläft.").input_ids
    )

    _export(
        app,
        tmp_path / "adapter",
        "--base",
        llama_dir,
        "--out",
        tmp_path / "bf16",
        "--merged",
        "--dtype",
        "bf16",
    )
    half = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert half.dtype == torch.bfloat16
    with torch.no_grad():
        assert (half(**forward).logits.float() - adapter).abs().max() < 0.1  # bf16 rounding only


def test_export_merged_hybrid_minilm_classifier(app, tmp_path):
    from transformers import AutoModelForSequenceClassification

    inputs = model_inputs("minilm")
    model = hyft.wrap(minilm_classifier(num_labels=3), _hybrid(), init_batches=[inputs])
    _train(model, inputs)
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        adapter = model(**forward).logits
    model.save_pretrained(tmp_path / "adapter")
    _export(app, tmp_path / "adapter", "--base", minilm_path(), "--out", tmp_path / "merged", "--merged")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    assert loaded.config.num_labels == 3
    with torch.no_grad():
        assert torch.allclose(loaded(**forward).logits, adapter, atol=1e-4, rtol=0)


def test_export_refuses_without_merged_and_into_a_full_folder(app, llama_dir, tmp_path):
    result = CliRunner().invoke(
        app, ["export", str(tmp_path), "--base", str(llama_dir), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "--merged" in result.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    result = CliRunner().invoke(
        app, ["export", str(tmp_path), "--base", str(llama_dir), "--out", str(tmp_path / "taken"), "--merged"]
    )
    assert result.exit_code == 2 and "not an empty folder" in result.output


def test_full_fine_tuning_saves_a_transformers_folder_and_old_full_folders_still_load(
    app, llama_dir, tmp_path
):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from hyft.adapters.model import _untied_state

    base = AutoModelForCausalLM.from_pretrained(llama_dir)
    inputs = _llama_inputs(base.config.vocab_size)
    model = hyft.wrap(base, hyft.AdapterConfig(method="full"))
    _train(model, inputs, lr=1e-3)
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        trained = model(**forward).logits
    model.save_pretrained(tmp_path / "full")
    files = {p.name for p in (tmp_path / "full").iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "hyft_config.json",
    } <= files and "adapter_config.json" not in files
    with torch.no_grad():
        direct = AutoModelForCausalLM.from_pretrained(tmp_path / "full").eval()(**forward).logits
        assert torch.allclose(direct, trained, atol=1e-5, rtol=0)
        reloaded = hyft.load(AutoModelForCausalLM.from_pretrained(llama_dir), tmp_path / "full")
        assert torch.equal(reloaded(**forward).logits, trained)
    # The folder layout before this change: adapter_config.json (the hyft block) + model.safetensors.
    old = tmp_path / "old"
    old.mkdir()
    save_file(_untied_state(model.base_model), str(old / "model.safetensors"), metadata={"format": "pt"})
    (old / "adapter_config.json").write_text((tmp_path / "full" / "hyft_config.json").read_text())
    with torch.no_grad():
        assert torch.equal(
            hyft.load(AutoModelForCausalLM.from_pretrained(llama_dir), old)(**forward).logits, trained
        )
    # And hyft export re-saves a full folder with the tokenizer.
    _export(app, tmp_path / "full", "--base", llama_dir, "--out", tmp_path / "exported", "--merged")
    assert "tokenizer.json" in {p.name for p in (tmp_path / "exported").iterdir()}
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["architectures"] == [
        "LlamaForCausalLM"
    ]
    with torch.no_grad():
        exported = AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()(**forward).logits
        assert torch.allclose(exported, trained, atol=1e-5, rtol=0)
