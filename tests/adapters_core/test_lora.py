"""LoRA: identity at init, fidelity to PEFT, norm cap, targeting errors (methods.md §1 tests L1–L4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.lora import LoraLinear, lowrank_frobenius_norm
from hyft.adapters.targeting import TargetError
from tests.conftest import MODEL_FACTORIES, model_inputs


@pytest.mark.parametrize("name", ["minilm", "bloom", "llama"])
def test_lora_and_lora_ga_leave_the_model_unchanged_at_init(name):
    base = MODEL_FACTORIES[name]()
    inputs = model_inputs(name)
    with torch.no_grad():
        reference = base(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    lora = hyft.wrap(MODEL_FACTORIES[name](), hyft.AdapterConfig(method="lora", r=4, alpha=8))
    lora_ga = hyft.wrap(
        MODEL_FACTORIES[name](), hyft.AdapterConfig(method="lora_ga", r=4, alpha=8), init_batches=[inputs]
    )
    with torch.no_grad():
        out_lora = lora(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        out_ga = lora_ga(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    assert torch.equal(out_lora, reference)  # B = 0: bit for bit
    assert torch.allclose(out_ga, reference, atol=1e-5, rtol=0)
    assert len(lora.adapted_layers()) > 0
    # LoRA-GA really moved away from zero: the trainable factors are not zero.
    first = next(iter(lora_ga.adapted_layers().values()))
    assert first.lora_B.abs().max() > 0 and first.lora_A.abs().max() > 0


def test_lora_forward_equals_peft_lora_with_the_same_factors():
    from peft import LoraConfig, get_peft_model

    from tests.conftest import tiny_llama

    inputs = model_inputs("llama")
    ours = hyft.wrap(
        tiny_llama(), hyft.AdapterConfig(method="lora", r=4, alpha=12, target_modules=["q_proj", "down_proj"])
    )
    theirs = get_peft_model(
        tiny_llama(), LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "down_proj"])
    )
    generator = torch.Generator().manual_seed(3)
    for name, layer in ours.adapted_layers().items():
        A = torch.randn(layer.lora_A.shape, generator=generator) * 0.3
        B = torch.randn(layer.lora_B.shape, generator=generator) * 0.3
        with torch.no_grad():
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
            peft_layer = theirs.base_model.model.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(A)
            peft_layer.lora_B["default"].weight.copy_(B)
    with torch.no_grad():
        a = ours(input_ids=inputs["input_ids"]).logits
        b = theirs(input_ids=inputs["input_ids"]).logits
        base = tiny_llama()(input_ids=inputs["input_ids"]).logits
    assert (a - base).abs().max() > 1e-2  # the adapters do something
    assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_rslora_scaling():
    config = hyft.AdapterConfig(r=16, alpha=32, use_rslora=True)
    assert config.scaling == pytest.approx(32 / 4)
    assert hyft.AdapterConfig(r=16, alpha=32).scaling == pytest.approx(2.0)


def test_gram_trace_norm_equals_explicit_norm():
    generator = torch.Generator().manual_seed(0)
    B, A = torch.randn(40, 6, generator=generator), torch.randn(6, 30, generator=generator)
    assert torch.allclose(lowrank_frobenius_norm(B, A), (B @ A).norm(), rtol=1e-5)


def test_norm_cap_bounds_the_effective_update_and_is_inactive_when_small():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(32, 24))
    model = hyft.wrap(
        base, hyft.AdapterConfig(method="lora", r=4, alpha=8, norm_cap=0.05, target_modules=["0"])
    )
    layer = model.adapted_layers()["0"]
    w0_norm = layer.base_layer.weight.norm()
    with torch.no_grad():
        layer.lora_B.normal_(std=5.0)
    delta = layer.delta_weight()
    assert delta.norm() <= 0.05 * w0_norm * (1 + 1e-6)
    assert delta.norm() >= 0.05 * w0_norm * (1 - 1e-4)  # the cap binds exactly at ρ‖W0‖
    x = torch.randn(5, 32)
    assert torch.allclose(model(x), x @ layer.merged_weight().T + layer.base_layer.bias, atol=1e-5)
    with torch.no_grad():
        layer.lora_B.mul_(1e-6)
    assert float(layer.delta_scale()) == pytest.approx(layer.scaling)  # κ = 1 exactly when inactive


def test_unknown_target_pattern_lists_close_names():
    from tests.conftest import tiny_llama

    with pytest.raises(TargetError, match="q_proj"):
        hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", target_modules=["q_projj"]))
    with pytest.raises(TargetError, match="none is an nn.Linear"):
        hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", target_modules=["input_layernorm"]))


def test_regex_and_suffix_targets_select_the_same_layers():
    from tests.conftest import tiny_llama

    by_suffix = hyft.wrap(tiny_llama(), hyft.AdapterConfig(target_modules=["q_proj", "v_proj"]))
    by_regex = hyft.wrap(tiny_llama(), hyft.AdapterConfig(target_modules=r".*\.(q|v)_proj"))
    assert sorted(by_suffix.adapted_layers()) == sorted(by_regex.adapted_layers())
    assert len(by_suffix.adapted_layers()) == 4


def test_wrapped_model_generates_like_a_transformers_model():
    from tests.conftest import tiny_llama

    ids = model_inputs("llama")["input_ids"][:1, :5]
    plain = tiny_llama().generate(ids, max_new_tokens=4, do_sample=False)
    wrapped = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=2)).generate(
        ids, max_new_tokens=4, do_sample=False
    )
    assert torch.equal(plain, wrapped)


@pytest.mark.parametrize("shape", [(7, 12), (3, 5, 12), (2, 2, 3, 12)])
@pytest.mark.parametrize("in_place", [True, False])
def test_lora_layer_output_and_gradients_match_the_explicit_formula(shape, in_place):
    torch.manual_seed(0)
    base = nn.Linear(12, 9)
    layer = LoraLinear(base, hyft.AdapterConfig(method="lora", r=4, alpha=8))
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(*shape, requires_grad=True)
    flat = x.reshape(-1, 12) if in_place else x
    result = layer.add_delta(base(flat), flat, 0.7, in_place).view(*shape[:-1], 9)
    expected = base(x) + 0.7 * (x @ layer.lora_A.T) @ layer.lora_B.T
    assert torch.allclose(result, expected, atol=1e-5)
    assert torch.allclose(
        layer(x), base(x) + layer.scaling * (x @ layer.lora_A.T) @ layer.lora_B.T, atol=1e-5
    )
    weights = torch.randn(expected.shape)
    grads = torch.autograd.grad((result * weights).sum(), [x, layer.lora_A, layer.lora_B])
    reference = torch.autograd.grad((expected * weights).sum(), [x, layer.lora_A, layer.lora_B])
    for got, want in zip(grads, reference, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
