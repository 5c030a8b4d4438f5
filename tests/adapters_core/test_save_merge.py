"""Merge, save → load, PEFT interoperability, frozen base (methods.md §1 L2/L5, §2.5 G5)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import hyft
from hyft.adapters.lora import LoraLinear
from tests.conftest import MODEL_FACTORIES, model_inputs, tiny_llama


def _train_a_little(model, inputs, steps=3, lr=0.05):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _hashes(module):
    return {
        n: hashlib.sha256(p.detach().cpu().numpy().tobytes()).hexdigest()
        for n, p in module.named_parameters()
    }


@pytest.mark.parametrize("method", ["lora", "lora_ga"])
@pytest.mark.parametrize("name", ["minilm", "llama"])
def test_merge_equals_adapter_and_save_load_restores_it(tmp_path, method, name):
    inputs = model_inputs(name)
    config = hyft.AdapterConfig(method=method, r=4, alpha=8, norm_cap=0.5 if name == "llama" else None)
    model = hyft.wrap(MODEL_FACTORIES[name](), config, init_batches=[inputs])
    _train_a_little(model, inputs)
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        adapted = model(**forward).logits
        assert (adapted - MODEL_FACTORIES[name]()(**forward).logits).abs().max() > 1e-4  # training moved it
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    loaded = hyft.load(MODEL_FACTORIES[name](), tmp_path)
    with torch.no_grad():
        restored = loaded(**forward).logits
    if config.norm_cap is None:  # the saved tensors are the trained ones: same weights, same ops, same bits
        trained, back = model.state_dict(), loaded.state_dict()
        assert trained.keys() == back.keys()
        assert [n for n in trained if not torch.equal(back[n], trained[n])] == []
        assert torch.equal(restored, adapted)
    else:
        # κ = min(1, ρ‖W0‖ / (s‖BA‖)) is folded into the saved B so that PEFT reproduces the capped output;
        # that product is one fp32 rounding, so the reload agrees to rounding, not bit for bit.
        lora_layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
        assert any(float(layer.delta_scale()) < layer.scaling for layer in lora_layers)  # the cap bites
        assert torch.allclose(restored, adapted, atol=1e-6, rtol=0)
        merged = loaded.merge_and_unload()
        assert type(merged).__name__ == type(MODEL_FACTORIES[name]()).__name__
        assert not any("lora" in n for n, _ in merged.named_parameters())
        assert torch.allclose(merged(**forward).logits, adapted, atol=1e-5, rtol=1e-5)


def test_lora_ga_adapter_loads_in_peft_with_the_same_outputs(tmp_path):
    from peft import PeftModel

    inputs = model_inputs("llama")
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora_ga", r=4, alpha=8), init_batches=[inputs])
    _train_a_little(model, inputs)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 8 and saved["lora_alpha"] == 16
    peft_model = PeftModel.from_pretrained(tiny_llama(), tmp_path).eval()
    with torch.no_grad():
        ours = model(input_ids=inputs["input_ids"]).logits
        theirs = peft_model(input_ids=inputs["input_ids"]).logits
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


def test_base_weights_are_hash_identical_after_training():
    inputs = model_inputs("minilm")
    base = MODEL_FACTORIES["minilm"]()
    before = {n: h for n, h in _hashes(base).items() if not n.startswith("classifier")}
    model = hyft.wrap(base, hyft.AdapterConfig(method="lora_ga", r=4), init_batches=[inputs])
    adapter_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _train_a_little(model, inputs, steps=5)
    after = _hashes(model.base_model)
    for name, digest in before.items():
        parts = name.rsplit(".", 1)
        adapted_name = f"{parts[0]}.base_layer.{parts[1]}"
        assert after.get(name, after.get(adapted_name)) == digest, name
    changed = [
        n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, adapter_before[n])
    ]
    assert len(changed) == len(adapter_before)  # every adapter tensor (and the head) was trained


def test_loading_on_a_different_base_is_refused(tmp_path):
    model = hyft.wrap(tiny_llama(seed=0), hyft.AdapterConfig(method="lora", r=2))
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="differ"):
        hyft.load(tiny_llama(seed=1), tmp_path)


def test_full_fine_tuning_trains_everything_and_round_trips(tmp_path):
    inputs = model_inputs("llama")
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="full"))
    assert model.trainable_parameters() == model.total_parameters()
    _train_a_little(model, inputs, steps=2, lr=1e-3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = hyft.load(tiny_llama(seed=5), tmp_path)
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=inputs["input_ids"]).logits, model(input_ids=inputs["input_ids"]).logits
        )
