"""The hybrid's unitary sub-layers (``unitary_modules``) and its ``lambda_norm="rms"`` rule, against oracles.

Before the merge fix, ``HybridLinear.merged_weight`` multiplied by Ũ on the right (``transform_input``)
where the forward's ``W_hybrid·Ũᵀ`` needs U applied to each row: merged and adapter outputs differed by
0.06–0.40 on the tiny models below (now ≤ 4e-7).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.hybrid import HybridLinear
from hyft.adapters.unitary import UnitaryLinear
from tests.adapters_orthogonal.oracles import butterfly_oracle, cayley_by_inverse, realify, unitary_oracle
from tests.adapters_precision.tiny import bert_inputs, tiny_bert
from tests.conftest import model_inputs, tiny_bloom, tiny_llama

FACTORIES = {"bloom": tiny_bloom, "llama": tiny_llama, "bert": tiny_bert}
UNITARY_MODULES = {
    "bloom": ["dense", "dense_4h_to_h"],
    "llama": ["o_proj", "down_proj"],
    "bert": ["query", "dense"],
}


def _perturb(model: nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize("mode", ["add", "replace"])
@pytest.mark.parametrize("model_name", list(FACTORIES))
def test_merge_and_unload_equals_the_adapter_forward_with_unitary_modules(model_name, mode):
    batch = bert_inputs() if model_name == "bert" else model_inputs("llama")
    config = hyft.AdapterConfig(
        method="hybrid",
        r=4,
        alpha=8,
        boft_block_size=4,
        boft_n_butterfly_factor=2,
        unitary_modules=UNITARY_MODULES[model_name],
        unitary_mode=mode,
    )
    model = hyft.wrap(FACTORIES[model_name](), config, init_batches=[batch])
    layers = model.adapted_layers().values()
    if mode == "add":
        assert sum(isinstance(m, HybridLinear) and m.unitary is not None for m in layers) >= 4
    else:
        assert sum(type(m) is UnitaryLinear for m in layers) >= 4
        assert any(isinstance(m, HybridLinear) for m in layers)
    _perturb(model)
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        adapted = model(**inputs).logits
        merged = model.merge_and_unload()
        assert not any(isinstance(m, (HybridLinear, UnitaryLinear)) for m in merged.modules())
        out = merged(**inputs).logits
    assert float((out - adapted).abs().max()) <= 1e-5 * float(adapted.abs().max())


class Regression(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, labels=None):
        out = self.proj(x)
        loss = ((out - labels) ** 2).mean() if labels is not None else None
        return type("Out", (), {"loss": loss, "logits": out})()


def _data(seed: int = 0, dim: int = 32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, dim, generator=generator)
    return {"x": x, "labels": x @ (torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=generator)).T}


def _skew(upper: torch.Tensor, size: int) -> torch.Tensor:
    """Q = U − Uᵀ from row-major strict-upper entries (..., b(b−1)/2), fp64, written out independently."""
    skew = torch.zeros(*upper.shape[:-1], size, size, dtype=torch.float64)
    k = 0
    for i in range(size):
        for j in range(i + 1, size):
            skew[..., i, j] = upper[..., k].double()
            skew[..., j, i] = -upper[..., k].double()
            k += 1
    return skew


def _hybrid_weight_oracle(layer: HybridLinear, lam: float) -> torch.Tensor:
    """W0 + μ(W0Rᵀ − W0) + λ·s·(BA − B0A0) (methods.md §6.2, linear mix) from dense fp64 matrices."""
    boft, lora = layer.boft, layer.lora
    blocks = cayley_by_inverse(_skew(boft.boft_R.detach(), boft.block_size))
    rotation = butterfly_oracle(blocks, boft.perms)
    w0 = layer.base_layer.weight.detach().double()
    delta = lora.lora_B.detach().double() @ lora.lora_A.detach().double()
    delta = delta - lora.lora_B0.double() @ lora.lora_A0.double()
    mu = 1.0 - lam
    return w0 + mu * (w0 @ rotation.T - w0) + lam * lora.scaling * delta


def test_the_hybrid_applies_its_unitary_sub_layer_as_the_dense_oracle_says():
    data = _data()
    config = hyft.AdapterConfig(
        method="hybrid",
        r=4,
        alpha=8,
        boft_block_size=4,
        boft_n_butterfly_factor=2,
        target_modules=["proj"],
        unitary_modules=["proj"],
        mixer="fixed",
        fixed_lambda=0.4,
    )
    model = hyft.wrap(Regression(), config, init_batches=[data])
    layer = model.adapted_layers()["proj"]
    assert isinstance(layer, HybridLinear) and layer.unitary is not None
    _perturb(model)
    model.eval()
    unitary = layer.unitary
    # Ũ in the row form the layer uses: x ↦ x @ realify(U) (per token Ũᵀx = real(Uᴴ)x), methods.md §5.
    u = unitary_oracle(unitary.unitary_theta.detach(), unitary.unitary_v.detach(), None)
    dense_u = realify(u, "halves", 32)
    w_hybrid = _hybrid_weight_oracle(layer, 0.4)
    bias = layer.base_layer.bias.detach().double()
    x = data["x"]
    expected = x.double() @ dense_u @ w_hybrid.T + bias
    without_unitary = x.double() @ w_hybrid.T + bias
    with torch.no_grad():
        out = layer(x).double()
        merged = layer.merged_weight().double()
    scale = float(expected.abs().max())
    assert float((out - expected).abs().max()) <= 1e-5 * scale
    assert float((without_unitary - expected).abs().max()) > 0.05 * scale  # the unitary is far from I here
    assert torch.allclose(merged, w_hybrid @ dense_u.T, atol=1e-5)  # W_eff = W_hybrid·Ũᵀ
    with torch.no_grad():  # and the layer follows its unitary parameters
        unitary.unitary_theta.add_(0.5)
        moved = layer(x).double()
    assert float((moved - out).abs().max()) > 0.05 * scale


def test_rms_lambda_divides_each_branch_norm_by_the_root_of_its_own_parameter_count():
    # r = 8 LoRA (8·(32 + 32) = 512 parameters) against an OFT branch with b = 4 (32·3/2 = 48): the counts
    # differ ~10×, so dividing by the other branch's count gives a clearly different λ.
    data = _data()
    config = hyft.AdapterConfig(
        method="hybrid",
        r=8,
        alpha=16,
        boft_block_size=4,
        target_modules=["proj"],
        mixer="descaled",
        lambda_norm="rms",
        lambda_init=0.3,
        lambda_warmup_steps=0,
        lambda_min=0.0,
        lambda_max=1.0,
    )
    model = hyft.wrap(Regression(), config, init_batches=[data])
    layer = model.adapted_layers()["proj"]
    _perturb(model, scale=0.05)
    model.train()
    model(**data).loss.backward()
    lora, boft = layer.lora, layer.boft
    g_lora = math.sqrt(float(lora.lora_A.grad.square().sum() + lora.lora_B.grad.square().sum()))
    g_rotation = float(boft.boft_R.grad.norm())
    count_lora, count_rotation = 8 * (32 + 32), 1 * 32 * (4 - 1) // 2
    assert (lora.lora_A.numel() + lora.lora_B.numel(), boft.boft_R.numel()) == (count_lora, count_rotation)

    def rule(n_lora: int, n_rotation: int) -> float:
        # de-scaled by this step's weights λ = 0.3 and μ = 0.7 (methods.md §6.3), first EMA value = the value
        lora_hat = g_lora / math.sqrt(n_lora) / 0.3
        rotation_hat = g_rotation / math.sqrt(n_rotation) / 0.7
        return lora_hat / (lora_hat + rotation_hat)

    expected, swapped = rule(count_lora, count_rotation), rule(count_rotation, count_lora)
    model.after_backward()
    lam = model.mixing_weights()["proj"]
    assert lam == pytest.approx(expected, rel=1e-5)
    assert abs(swapped - expected) > 0.1 and abs(rule(1, 1) - expected) > 0.05  # the test can tell them apart
