"""Save → load and merge on quantized bases; full fine-tuning refused; the fingerprint names the cause."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import hyft
from hyft.adapters.quantized import is_quantized_linear
from tests.adapters_quantized.tiny import (
    METHODS,
    REFERENCES,
    batch,
    dequantised_reference_model,
    forward_inputs,
    load_fp32,
    load_quantized,
    wrap_kwargs,
)

ADAPTER_KEYS = ("lora_", "boft_", "oft_", "unitary_", "hybrid_")


def _trained(llama_dir, kind, method, steps=4):
    settings = METHODS[method]
    inputs = batch()
    model = hyft.wrap(
        load_quantized(llama_dir, kind),
        hyft.AdapterConfig(**settings),
        **wrap_kwargs(settings, batch(seed=2)),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    for _ in range(steps):
        model(**inputs).loss.backward()
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def _logits(model, inputs):
    with torch.no_grad():
        return model(**forward_inputs(inputs)).logits


def on_dequantised_twin(llama_dir, kind, model):
    """The same adapter tensors on the fp32 twin of the base (every quantized weight replaced by the
    reference Ŵ): the adapter's output in exact dequantised arithmetic."""
    config = model.adapter_config
    twin = hyft.wrap(
        dequantised_reference_model(llama_dir, kind),
        config,
        **wrap_kwargs({"method": config.method}, batch(seed=2)),
    )
    trained = model.adapted_layers()
    for name, layer in twin.adapted_layers().items():
        layer.load_adapter_state(trained[name].adapter_state())
    return twin.eval()


@pytest.mark.parametrize("kind", ["nf4", "int8"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_save_load_and_merge_on_a_quantized_base(llama_dir, tmp_path, kind, method):
    inputs = batch(seed=3)
    model = _trained(llama_dir, kind, method)
    adapted = _logits(model, inputs)
    base = _logits(load_quantized(llama_dir, kind), inputs)
    assert (adapted - base).abs().max() > 1e-3  # training moved the outputs

    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert saved and all(any(k in key for k in ADAPTER_KEYS) for key in saved), sorted(saved)[:4]
    assert all(t.is_floating_point() or t.dtype == torch.int64 for t in saved.values())  # no packed W0
    assert json.loads((tmp_path / "adapter_config.json").read_text())["hyft"]["base_quantization"] == kind

    loaded = hyft.load(load_quantized(llama_dir, kind), tmp_path)
    assert (_logits(loaded, inputs) - adapted).abs().max() <= 1e-5

    # The dequantisation tolerance of this adapter: its quantized forward against exact arithmetic on Ŵ.
    # 0 for NF4 with fp32 compute (the layer computes x·Ŵᵀ); LLM.int8() also rounds activations (~1e-2).
    exact = _logits(on_dequantised_twin(llama_dir, kind, loaded), inputs)
    tolerance = float((adapted - exact).abs().max())
    with pytest.warns(UserWarning, match="dequantised 14 quantized layers"):
        merged = loaded.merge_and_unload()
    assert not any(is_quantized_linear(m) for m in merged.modules())
    assert getattr(merged, "hf_quantizer", None) is None
    assert getattr(merged.config, "quantization_config", None) is None
    layer = merged.get_submodule("model.layers.1.mlp.down_proj")
    assert type(layer) is nn.Linear and layer.weight.dtype == torch.float32
    merged_logits = _logits(merged, inputs)
    assert (merged_logits - exact).abs().max() <= 1e-5  # the merge itself is exact in fp32
    assert (merged_logits - adapted).abs().max() <= tolerance + 1e-5


@pytest.mark.parametrize("kind", ["nf4", "int8"])
@pytest.mark.parametrize("method", ["lora", "lora_ga"])
def test_merged_lora_weight_is_the_reference_dequantisation_plus_s_BA(llama_dir, tmp_path, kind, method):
    """Oracle from the saved PEFT tensors: W_merged = Ŵ + (α'/r')·B'A', Ŵ rebuilt from the fp32 weights."""
    model = _trained(llama_dir, kind, method)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    scale = saved["lora_alpha"] / saved["r"]
    fp32 = load_fp32(llama_dir)
    with pytest.warns(UserWarning, match="dequantised"):
        merged = model.merge_and_unload()
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"):
        prefix = f"base_model.model.{name}."
        delta = scale * tensors[prefix + "lora_B.weight"] @ tensors[prefix + "lora_A.weight"]
        expected = REFERENCES[kind](fp32.get_submodule(name).weight) + delta
        assert delta.abs().max() > 1e-3
        assert (merged.get_submodule(name).weight - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", ["nf4", "int8"])
def test_full_fine_tuning_is_refused_on_a_quantized_base(llama_dir, tmp_path, kind):
    with pytest.raises(ValueError, match="full fine-tuning needs a full-precision base"):
        hyft.wrap(load_quantized(llama_dir, kind), hyft.AdapterConfig(method="full"))
    full = hyft.wrap(load_fp32(llama_dir), hyft.AdapterConfig(method="full"))
    full.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model is quantized"):
        hyft.load(load_quantized(llama_dir, kind), tmp_path)


def test_an_nf4_adapter_is_refused_on_the_full_precision_base_with_the_reason(llama_dir, tmp_path):
    _trained(llama_dir, "nf4", "lora", steps=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trained on a nf4 base, and this base is full-precision"):
        hyft.load(load_fp32(llama_dir), tmp_path)
    with pytest.raises(ValueError, match="trained on a nf4 base, and this base is int8"):
        hyft.load(load_quantized(llama_dir, "int8"), tmp_path)
