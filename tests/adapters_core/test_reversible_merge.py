"""Reversible merge: merge_adapter(safe_merge=...) / unmerge_adapter() (PEFT's semantics)."""

from __future__ import annotations

import pytest
import torch

import hyft
from hyft.adapters.layer import AdaptedLinear
from tests.conftest import MODEL_FACTORIES, model_inputs

CONFIGS = {
    "lora": dict(method="lora", r=4, alpha=8),
    "lora_ga": dict(method="lora_ga", r=4, alpha=8),
    "boft": dict(method="boft", boft_block_size=8, boft_n_butterfly_factor=2),
    "unitary": dict(method="unitary"),
    "hybrid": dict(
        method="hybrid", r=4, alpha=8, boft_block_size=8, boft_n_butterfly_factor=2, lambda_warmup_steps=0
    ),
}


def _trained(name, method, steps=3, lr=0.05):
    inputs = model_inputs(name)
    model = hyft.wrap(MODEL_FACTORIES[name](), hyft.AdapterConfig(**CONFIGS[method]), init_batches=[inputs])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(**inputs).loss.backward()
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model, {k: v for k, v in inputs.items() if k != "labels"}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_merge_forward_equals_adapter_and_unmerge_restores_w0_exactly(method):
    model, inputs = _trained("llama", method)
    w0 = {name: layer.base_layer.weight.detach().clone() for name, layer in model.adapted_layers().items()}
    with torch.no_grad():
        adapter = model(**inputs).logits
        assert (adapter - MODEL_FACTORIES["llama"]()(**inputs).logits).abs().max() > 1e-4  # training moved it
        model.merge_adapter(safe_merge=True)
        assert model.merged
        for name, layer in model.adapted_layers().items():
            assert not torch.equal(layer.base_layer.weight, w0[name]), name  # W_eff is in the base weight
        merged = model(**inputs).logits
        assert torch.allclose(merged, adapter, atol=1e-5, rtol=0), (merged - adapter).abs().max()
        with pytest.warns(UserWarning, match="already merged"):
            model.merge_adapter()
        model.unmerge_adapter()
        assert not model.merged
        for name, layer in model.adapted_layers().items():
            restored = layer.base_layer.weight
            assert restored.dtype == torch.float32 and torch.allclose(
                restored, w0[name], atol=1e-6, rtol=0
            ), name
            assert torch.equal(restored, w0[name]), name  # kept, not recomputed: bit for bit
        assert torch.equal(model(**inputs).logits, adapter)  # the adapter path runs again
    # Still trainable after the round trip: the adapter gets gradients again.
    model.train()
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_merge_on_minilm_and_merge_and_unload_of_a_merged_model():
    model, inputs = _trained("minilm", "hybrid")
    with torch.no_grad():
        adapter = model(**inputs).logits
        model.merge_adapter()
        assert torch.allclose(model(**inputs).logits, adapter, atol=1e-5, rtol=0)
        plain = model.merge_and_unload()  # from the kept W0, not W_eff twice
        assert not any(isinstance(m, AdaptedLinear) for m in plain.modules())
        assert torch.allclose(plain(**inputs).logits, adapter, atol=1e-5, rtol=0)


def test_safe_merge_refuses_nan_names_the_layer_and_leaves_the_model_unmerged():
    model, inputs = _trained("llama", "lora")
    names = list(model.adapted_layers())
    broken = names[len(names) // 2]  # layers before it merge first and must be undone
    with torch.no_grad():
        model.adapted_layers()[broken].lora_B.view(-1)[0] = float("nan")
    w0 = {name: layer.base_layer.weight.detach().clone() for name, layer in model.adapted_layers().items()}
    with pytest.raises(ValueError, match=f"layer '{broken}'.*NaN/Inf"):
        model.merge_adapter(safe_merge=True)
    assert not model.merged
    for name, layer in model.adapted_layers().items():
        assert torch.equal(layer.base_layer.weight, w0[name]), name


def test_safe_merge_refuses_overflow_in_the_cast_to_the_base_dtype():
    model, _ = _trained("llama", "lora", steps=1)
    model.half()
    layer_name, layer = next(iter(model.adapted_layers().items()))
    with torch.no_grad():
        layer.lora_B.fill_(1e4)
        layer.lora_A.fill_(1e4)
    with pytest.raises(ValueError, match=f"layer '{layer_name}'.*NaN/Inf.*float16"):
        model.merge_adapter(safe_merge=True)


def test_after_backward_leaves_lambda_alone_while_merged():
    model, inputs = _trained("llama", "hybrid")
    before = model.mixing_weights()
    model.merge_adapter()
    model.after_backward()  # no adapter gradients while merged: zero norms must not move λ
    assert model.mixing_weights() == before
